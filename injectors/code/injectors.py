"""``code.flag``: a failure flag that the application itself evaluates at a call site.

Unlike every other family, nothing happens on a host. The application wraps a call in
``scep_flags.failure_flag("checkout.charge", labels=...)``; the SDK polls
``GET /api/v1/failure-flags/active/`` and applies the flag's effect to a share of the
calls. The ledger row being ACTIVE and unexpired therefore *is* the fault: the agent's
apply marks it active, its revert (or the clock passing ``expires_at``) makes it vanish
from that endpoint, so expiry needs no mechanism of its own.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from injectors.base import InjectionContext, Injector, Params

__all__ = [
    "EXCEPTION_TYPES",
    "ExceptionParams",
    "FailureFlagInjector",
    "FlagParams",
]

#: Exception classes an application may be made to see. A closed list on purpose: the
#: SDK must never instantiate an arbitrary class named by whoever writes a spec.
EXCEPTION_TYPES = (
    "FailureFlagError",
    "RuntimeError",
    "ValueError",
    "ConnectionError",
    "TimeoutError",
    "PermissionError",
    "OSError",
)
FLAG_PATTERN = r"^[a-z][a-z0-9_\-]*(\.[a-z0-9_\-]+)*$"
LABEL_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$"
#: One minute: the SDK sleeps in the caller's thread, so longer is a hang, not latency.
MAX_LATENCY_MS = 60_000
#: Responses travel to every polling application on every poll; keep them small.
MAX_RESPONSE_BYTES = 16_384


class ExceptionParams(Params):
    message: str = Field(default="injected by SCEP failure flag", max_length=500)
    type: Literal[EXCEPTION_TYPES] = Field(
        default="FailureFlagError",
        description="class raised; the SDK's subclass also derives from FailureFlagError",
    )


class FlagParams(Params):
    flag: str = Field(max_length=100, pattern=FLAG_PATTERN, description="e.g. checkout.charge")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="all must match the call site's labels (values may use * globs); "
        "empty matches every call",
    )
    effect: Literal["exception", "latency", "response"]
    exception: ExceptionParams | None = None
    latency_ms: float | None = Field(default=None, gt=0, le=MAX_LATENCY_MS)
    response: Any = Field(default=None, description="JSON value substituted for the result")

    @field_validator("labels")
    @classmethod
    def _label_keys(cls, labels: dict[str, str]) -> dict[str, str]:
        if len(labels) > 20:
            raise ValueError("at most 20 labels")
        bad = [k for k in labels if not re.match(LABEL_KEY_PATTERN, k)]
        if bad:
            raise ValueError(f"invalid label name(s): {', '.join(map(repr, bad))}")
        return labels

    @model_validator(mode="after")
    def _one_effect(self) -> FlagParams:
        # Exactly the fields of the chosen effect: a stray latency_ms next to
        # effect=exception is a spec mistake, not a combination we silently ignore. An
        # explicit null counts as absent, so normalised params validate again unchanged.
        given = {
            name
            for name in ("exception", "latency_ms", "response")
            if name in self.model_fields_set and getattr(self, name) is not None
        }
        needed = {"exception": "exception", "latency": "latency_ms", "response": "response"}
        own = needed[self.effect]
        stray = sorted(given - {own})
        if stray:
            raise ValueError(f"effect {self.effect!r} does not take: {', '.join(stray)}")
        if self.effect == "latency" and self.latency_ms is None:
            raise ValueError("effect 'latency' needs latency_ms")
        if self.effect == "response":
            if "response" not in self.model_fields_set:
                raise ValueError("effect 'response' needs response (any JSON value)")
            try:
                size = len(json.dumps(self.response, allow_nan=False))
            except (TypeError, ValueError):
                raise ValueError("response must be a JSON value") from None
            if size > MAX_RESPONSE_BYTES:
                raise ValueError(f"response is {size} bytes; at most {MAX_RESPONSE_BYTES}")
        if self.effect == "exception" and self.exception is None:
            self.exception = ExceptionParams()
        return self


def describe_effect(params: dict[str, Any]) -> str:
    effect = params["effect"]
    if effect == "latency":
        return f"delay by {params['latency_ms']:g} ms"
    if effect == "response":
        return f"substitute the response {json.dumps(params['response'])[:80]}"
    exc = params.get("exception") or {}
    return f"raise {exc.get('type', 'FailureFlagError')}({exc.get('message', '')!r})"


class FailureFlagInjector(Injector):
    """Turn on a failure flag for a share of the calls that applications make through it.

    ``host_local`` stays True: the target's agent is still what moves the ledger row to
    ACTIVE (so preflight, the kill switch and the reaper treat it like any fault), even
    though the effect happens inside the applications that poll the flag.
    """

    name = "code.flag"
    family = "code"
    summary = (
        "Failure flag evaluated in-process by the scep_flags SDK: raise, delay or "
        "substitute the response at a named call site."
    )
    params_model = FlagParams

    def dry_run(self, params: dict[str, Any], ctx: InjectionContext) -> str:
        labels = params.get("labels") or {}
        where = (
            " where " + ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) if labels else ""
        )
        return (
            f"{self.name}: would {describe_effect(params)} on "
            f"{ctx.intensity:.0%} of calls through flag {params['flag']!r}{where}; "
            "applications see it on their next poll of /api/v1/failure-flags/active/"
        )

    def inject(self, params: dict[str, Any], ctx: InjectionContext) -> dict[str, Any]:
        # Nothing to do on the host: the caller marks the ledger row ACTIVE, which is
        # what the failure-flags endpoint publishes.
        return {"flag": params["flag"], "effect": params["effect"]}

    def revert(self, handle: dict[str, Any], ctx: InjectionContext) -> None:
        """No-op: once the row is REVERTED the endpoint stops listing the flag."""
