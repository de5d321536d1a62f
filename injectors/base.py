"""The injector contract and its exception hierarchy.

An injector is a small plugin: it validates its parameters, describes what it would do
(dry run), injects and returns a JSON-serialisable *handle*, and reverts from that handle
alone. ``revert`` must be idempotent: the orchestrator, the kill switch and the reaper
may all call it for the same fault, in any order, after any crash.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = [
    "FieldError",
    "InjectionContext",
    "InjectionError",
    "Injector",
    "InjectorError",
    "InvalidParams",
    "Params",
    "UnknownInjector",
]


class InjectorError(Exception):
    """Base of every error an injector raises."""


@dataclass(frozen=True)
class FieldError:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


class InvalidParams(InjectorError):
    """Parameters that fail validation; ``errors`` name each offending field."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))


class UnknownInjector(InjectorError):
    def __init__(self, name: str, known: list[str]):
        self.name = name
        self.known = known
        super().__init__(f"unknown fault type {name!r}; known types: {', '.join(known)}")


class InjectionError(InjectorError):
    """The fault could not be applied (or reverted); the message says why."""


class Params(BaseModel):
    """Base for injector parameter models: unknown keys are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


def pydantic_errors(exc: ValidationError, prefix: str = "") -> list[FieldError]:
    """Turn pydantic's errors into field paths such as ``fault.params.latency_ms``."""
    out = []
    for err in exc.errors():
        parts = [str(p) for p in err["loc"]]
        path = ".".join([prefix, *parts] if prefix else parts)
        reason = err["msg"]
        if err["type"] == "extra_forbidden":
            reason = "unknown field"
        elif reason.startswith("Value error, "):
            reason = reason[len("Value error, ") :]
        out.append(FieldError(path, reason))
    return out


@dataclass
class InjectionContext:
    """Everything an injector needs besides its parameters.

    ``target_config`` is the target's ``config`` (proxies, processes, base URL);
    ``expires_at`` is a Unix timestamp after which the fault must be gone;
    ``runtime`` is the agent's runtime (proxy manager …) when running inside an agent.
    """

    fault_id: int | None
    target_name: str
    target_config: dict[str, Any]
    intensity: float
    expires_at: float
    runtime: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


class Injector(ABC):
    """One fault type, e.g. ``network.latency``."""

    name: ClassVar[str]
    family: ClassVar[str]
    summary: ClassVar[str]
    params_model: ClassVar[type[Params]]
    #: True when the fault is applied by the target's agent (everything host-local).
    host_local: ClassVar[bool] = True

    def validate(self, params: dict[str, Any], target_config: dict[str, Any] | None = None) -> dict:
        """Return normalised params or raise InvalidParams naming each bad field.

        ``target_config`` lets an injector check references (a proxy name …) when the
        target is known; without it only the parameters' own shape is checked.
        """
        try:
            model = self.params_model.model_validate(params or {})
        except ValidationError as exc:
            raise InvalidParams(pydantic_errors(exc)) from None
        normalised = model.model_dump(mode="json")
        if target_config is not None:
            self.check_target(normalised, target_config)
        return normalised

    def check_target(self, params: dict[str, Any], target_config: dict[str, Any]) -> None:
        """Override to check params against the target; raise InvalidParams."""

    @abstractmethod
    def dry_run(self, params: dict[str, Any], ctx: InjectionContext) -> str:
        """Describe exactly what inject would do, without doing it."""

    @abstractmethod
    def inject(self, params: dict[str, Any], ctx: InjectionContext) -> dict[str, Any]:
        """Apply the fault; return the handle that revert needs."""

    @abstractmethod
    def revert(self, handle: dict[str, Any], ctx: InjectionContext) -> None:
        """Undo the fault. Idempotent; safe on a handle whose fault already expired."""
