"""What every fault listener the agent hosts has in common: the TCP proxy, the HTTP proxy
and the DNS responder each listen on one address, forward to one upstream and hold a set
of expiring rules that decide what happens to the traffic passing through.

Keeping the rule book here means "a rule past its expiry is gone" is implemented once:
a listener asked for its rules never returns an expired one, whichever protocol it speaks.
"""

from __future__ import annotations

import errno
import random
import time
from collections.abc import Iterable
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from injectors.base import InjectionError

__all__ = ["ProxyError", "RuleListener", "listen_error", "total_delay"]


class ProxyError(InjectionError):
    """A proxy could not be created or found; the message says which and why."""


class _Rule(Protocol):
    id: str
    expires_at: float


class _DelayRule(Protocol):
    kind: str
    delay_ms: float
    jitter_ms: float


R = TypeVar("R", bound=_Rule)


class RuleListener(Generic[R]):
    """One listening endpoint with its rules; lives entirely on one event loop.

    Subclasses list their counters in ``STATS`` and implement ``start`` / ``close``;
    :class:`~injectors.network.proxy.ProxyManager` hosts any of them.
    """

    STATS: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        name: str,
        listen: tuple[str, int],
        upstream: tuple[str, int],
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.rng = rng or random.Random()
        self.bound: tuple[str, int] | None = None
        self._rules: dict[str, R] = {}
        self.stats: dict[str, int] = dict.fromkeys(self.STATS, 0)

    async def start(self) -> tuple[str, int]:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def set_rule(self, rule: R) -> None:
        self._rules[rule.id] = rule
        self.rules_changed()

    def remove_rule(self, rule_id: str) -> bool:
        found = self._rules.pop(rule_id, None) is not None
        if found:
            self.rules_changed()
        return found

    def rules(self) -> list[R]:
        """The rules still in force (expired ones are dropped on the way)."""
        self.purge(time.time())
        return list(self._rules.values())

    def purge(self, now: float) -> None:
        for rule_id in [k for k, r in self._rules.items() if r.expires_at <= now]:
            del self._rules[rule_id]

    def rules_changed(self) -> None:
        """Hook for listeners whose live connections must re-read the rules at once."""


def total_delay(hits: Iterable[_DelayRule], rng: random.Random) -> float:
    """Seconds to hold a request or query: the delays of every matching delay rule add up,
    each with its own uniform jitter, never below zero."""
    delay = 0.0
    for r in hits:
        if r.kind == "delay":
            jitter = rng.uniform(-r.jitter_ms, r.jitter_ms) if r.jitter_ms else 0.0
            delay += max(0.0, r.delay_ms + jitter) / 1000.0
    return delay


def listen_error(what: str, name: str, address: tuple[str, int], exc: OSError) -> ProxyError:
    """The one-line reason a listener could not bind, e.g. "address already in use"."""
    host, port = address
    reason = "address already in use" if exc.errno == errno.EADDRINUSE else str(exc)
    return ProxyError(f"{what} {name!r} cannot listen on {host}:{port}: {reason}")


def describe(spec: Any) -> str:
    """``(listen → upstream)`` of a listener's config entry, for dry-run sentences."""
    if isinstance(spec, dict):
        return f"({spec.get('listen')} → {spec.get('upstream')})"
    return "(not defined on the target)"
