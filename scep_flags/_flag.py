"""``failure_flag``: evaluate a flag at a call site, as a context manager or a decorator.

Evaluation is split in two on purpose: :func:`decide` draws which active flags fire for
this call (pure, no sleeping), and the caller applies the outcome with ``time.sleep`` or
``asyncio.sleep``. That keeps one decision logic for sync code, async code and the HTTP
integrations, which each raise and substitute in their own library's terms.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from scep_flags._client import Flag, FlagsClient

__all__ = [
    "FailureFlagError",
    "FlagOutcome",
    "configure",
    "decide",
    "failure_flag",
    "get_client",
    "http_response_parts",
    "reset",
]

log = logging.getLogger("scep_flags")

F = TypeVar("F", bound=Callable[..., Any])

_client: FlagsClient | None = None
_client_lock = threading.Lock()
_rng = random.Random()


class FailureFlagError(Exception):
    """Raised by an ``exception`` flag; every injected exception also derives from it,
    so an application (or a test) can always tell an injected failure from a real one."""

    flag: str = ""
    fault: int = 0


_BUILTINS: dict[str, type[Exception]] = {
    "RuntimeError": RuntimeError,
    "ValueError": ValueError,
    "ConnectionError": ConnectionError,
    "TimeoutError": TimeoutError,
    "PermissionError": PermissionError,
    "OSError": OSError,
}


@functools.cache
def _exception_class(name: str) -> type[FailureFlagError]:
    """``ConnectionError`` → a class deriving from both ConnectionError and FailureFlagError.

    Only names from the platform's allow-list are honoured; anything else (a newer
    platform, a tampered feed) falls back to FailureFlagError itself.
    """
    base = _BUILTINS.get(name)
    if base is None:
        return FailureFlagError
    return type(f"Injected{name}", (base, FailureFlagError), {"__module__": __name__})


def make_exception(flag: Flag) -> FailureFlagError:
    exc = _exception_class(flag.exception_type)(flag.exception_message)
    exc.flag = flag.flag
    exc.fault = flag.fault
    return exc


# -- configuration ---------------------------------------------------------------------


def configure(
    base_url: str,
    token: str | None = None,
    *,
    cache_ttl_s: float = 2.0,
    timeout_s: float = 0.5,
    app_labels: dict[str, str] | None = None,
    target: str | None = None,
    warn_interval_s: float = 60.0,
) -> FlagsClient:
    """Point the SDK at a SCEP installation (a viewer token is enough).

    ``app_labels`` are merged under every call's labels (e.g. ``{"service": "checkout"}``)
    so a flag can be aimed at one application; ``target`` keeps only the flags of that
    SCEP target.
    """
    global _client
    client = FlagsClient(
        base_url,
        token,
        cache_ttl_s=cache_ttl_s,
        timeout_s=timeout_s,
        app_labels=app_labels,
        target=target,
        warn_interval_s=warn_interval_s,
    )
    with _client_lock:
        _client = client
    return client


def get_client() -> FlagsClient | None:
    """The configured client; configured from ``SCEP_FLAGS_URL``/``SCEP_FLAGS_TOKEN`` on
    first use when ``configure`` was never called; None means flags are off."""
    global _client
    if _client is None and os.environ.get("SCEP_FLAGS_URL"):
        with _client_lock:
            if _client is None:
                try:
                    _client = FlagsClient(
                        os.environ["SCEP_FLAGS_URL"],
                        os.environ.get("SCEP_FLAGS_TOKEN") or None,
                        target=os.environ.get("SCEP_FLAGS_TARGET") or None,
                    )
                except ValueError as exc:
                    log.warning("scep_flags: SCEP_FLAGS_URL ignored: %s", exc)
    return _client


def reset() -> None:
    """Forget the configuration: flags are off until ``configure`` is called again."""
    global _client
    with _client_lock:
        _client = None


# -- deciding --------------------------------------------------------------------------


@dataclass
class FlagOutcome:
    """What the flags decided for one call: the fired flags and their combined effect.

    ``response`` is only meaningful when ``has_response`` is True (a flag may substitute
    ``None`` itself); ``value(default)`` is the short form of that test.
    """

    name: str
    labels: dict[str, str]
    fired: list[Flag] = field(default_factory=list)
    latency_s: float = 0.0
    error: FailureFlagError | None = None
    has_response: bool = False
    response: Any = None

    @property
    def active(self) -> bool:
        return bool(self.fired)

    def value(self, default: Any = None) -> Any:
        return self.response if self.has_response else default


def decide(
    name: str,
    labels: dict[str, Any] | None = None,
    *,
    client: FlagsClient | None = None,
    flags: list[Flag] | None = None,
) -> FlagOutcome:
    """Draw which active flags fire for this call. Never raises, never sleeps."""
    client = client or get_client()
    merged = {**(client.app_labels if client else {})}
    merged.update({str(k): str(v) for k, v in (labels or {}).items()})
    outcome = FlagOutcome(name, merged)
    if client is None:
        return outcome
    try:
        for flag in client.flags() if flags is None else flags:
            if not flag.matches(name, merged):
                continue
            if flag.intensity < 1.0 and _rng.random() >= flag.intensity:
                continue
            outcome.fired.append(flag)
            if flag.effect == "latency" and flag.latency_ms:
                outcome.latency_s += flag.latency_ms / 1000.0
            elif flag.effect == "exception" and outcome.error is None:
                outcome.error = make_exception(flag)
            elif flag.effect == "response" and not outcome.has_response:
                outcome.has_response = True
                outcome.response = flag.response
    except Exception:  # a bug here must never break the application
        log.exception("scep_flags: evaluating flag %r failed; no fault applied", name)
        return FlagOutcome(name, merged)
    return outcome


async def decide_async(
    name: str, labels: dict[str, Any] | None = None, *, client: FlagsClient | None = None
) -> FlagOutcome:
    """``decide`` without blocking the event loop when the cache needs a fetch."""
    client = client or get_client()
    if client is None:
        return decide(name, labels, client=None)
    flags = client.cached() if client.is_fresh() else await asyncio.to_thread(client.flags)
    return decide(name, labels, client=client, flags=flags)


def apply(outcome: FlagOutcome) -> FlagOutcome:
    """Sleep the latency, then raise the injected exception if one fired."""
    if outcome.latency_s > 0:
        time.sleep(outcome.latency_s)
    if outcome.error is not None:
        raise outcome.error
    return outcome


async def apply_async(outcome: FlagOutcome) -> FlagOutcome:
    if outcome.latency_s > 0:
        await asyncio.sleep(outcome.latency_s)
    if outcome.error is not None:
        raise outcome.error
    return outcome


def http_response_parts(value: Any) -> tuple[int, dict[str, str], bytes]:
    """How a substituted value becomes an HTTP response in the integrations.

    ``{"status": 503, "headers": {...}, "body": ...}`` sets those parts (a string body is
    sent as is, anything else as JSON); any other value is a 200 with it as JSON body.
    """
    if isinstance(value, dict) and isinstance(value.get("status"), int):
        status = value["status"]
        headers = {str(k): str(v) for k, v in (value.get("headers") or {}).items()}
        body = value.get("body")
    else:
        status, headers, body = 200, {}, value
    if isinstance(body, str):
        headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        return status, headers, body.encode()
    headers.setdefault("Content-Type", "application/json")
    return status, headers, json.dumps(body).encode()


# -- the public helper -----------------------------------------------------------------


class failure_flag:  # lower case: reads as a function at call sites, like contextlib's
    """A named call site that active flags can fault.

    As a context manager it applies the outcome on entry (sleeps, raises) and yields the
    :class:`FlagOutcome`, whose ``response`` the block may substitute::

        with failure_flag("checkout.charge", labels={"region": "eu"}) as flag:
            result = flag.response if flag.has_response else charge(order)

    As a decorator it evaluates on every call and, for a ``response`` flag, returns the
    substituted value without calling the function. Async functions and ``async with``
    sleep with ``asyncio.sleep``.
    """

    def __init__(self, name: str, labels: dict[str, Any] | None = None):
        self.name = name
        self.labels = dict(labels or {})

    def evaluate(self) -> FlagOutcome:
        return decide(self.name, self.labels)

    def __enter__(self) -> FlagOutcome:
        return apply(self.evaluate())

    def __exit__(self, *exc_info: Any) -> bool:
        return False

    async def __aenter__(self) -> FlagOutcome:
        return await apply_async(await decide_async(self.name, self.labels))

    async def __aexit__(self, *exc_info: Any) -> bool:
        return False

    def __call__(self, func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                outcome = await apply_async(await decide_async(self.name, self.labels))
                if outcome.has_response:
                    return outcome.response
                return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            outcome = apply(self.evaluate())
            if outcome.has_response:
                return outcome.response
            return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]
