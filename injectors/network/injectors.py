"""The network fault types: each one is a rule on one of the target's fault proxies.

The injectors stay thin on purpose: they validate, describe and translate parameters into
a :class:`ProxyRule`; the agent's :class:`ProxyManager` does the work. Because every rule
carries the fault's ``expires_at``, a fault whose revert never arrives still ends on time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import Field

from injectors.base import (
    FieldError,
    InjectionContext,
    InjectionError,
    Injector,
    InvalidParams,
    Params,
)
from injectors.network.proxy import ProxyError, ProxyManager, ProxyRule, proxy_key

__all__ = [
    "BandwidthInjector",
    "BandwidthParams",
    "BlackholeInjector",
    "BlackholeParams",
    "LatencyInjector",
    "LatencyParams",
    "ResetPeerInjector",
    "ResetPeerParams",
]

#: Ten minutes: longer delays are indistinguishable from a blackhole and only hold memory.
MAX_MS = 600_000


class ProxyParams(Params):
    """Fields every network fault shares: which proxy, and which way the bytes flow."""

    proxy: str = Field(min_length=1, description="name of one of the target's proxies")
    direction: Literal["downstream", "upstream", "both"] = Field(
        default="downstream",
        description="downstream = responses (upstream → client); upstream = requests",
    )


class LatencyParams(ProxyParams):
    latency_ms: float = Field(gt=0, le=MAX_MS)
    jitter_ms: float = Field(default=0, ge=0, le=MAX_MS)


class BandwidthParams(ProxyParams):
    rate_kbps: float = Field(gt=0, description="kilobytes (KiB) per second per connection")


class ResetPeerParams(ProxyParams):
    reset_after_ms: float = Field(default=0, ge=0, le=MAX_MS)


class BlackholeParams(ProxyParams):
    close_after_ms: float | None = Field(
        default=None, ge=0, le=MAX_MS, description="close after this long; None = hold open"
    )


def _num(value: float) -> str:
    """300.0 → "300", 12.5 → "12.5": dry-run sentences should read like a human wrote them."""
    return f"{value:g}"


def _traffic(direction: str) -> str:
    return "traffic in both directions" if direction == "both" else f"{direction} traffic"


class _ProxyFaultInjector(Injector):
    """Shared plumbing: target checks, rule lifecycle and the dry-run sentence frame."""

    family = "network"
    kind: ClassVar[str]

    def check_target(self, params: dict[str, Any], target_config: dict[str, Any]) -> None:
        proxies = target_config.get("proxies") or {}
        if not proxies:
            raise InvalidParams(
                [FieldError("proxy", "the target defines no proxies (config.proxies is empty)")]
            )
        if params["proxy"] not in proxies:
            known = ", ".join(sorted(proxies))
            reason = f"unknown proxy {params['proxy']!r}; the target defines: {known}"
            raise InvalidParams([FieldError("proxy", reason)])

    def rule_fields(self, params: dict[str, Any]) -> dict[str, Any]:
        """Kind-specific ProxyRule fields taken from the params."""
        return {}

    def effect(self, params: dict[str, Any]) -> str:
        """The verb phrase of the dry-run sentence, e.g. "add 300 ms latency to …"."""
        raise NotImplementedError

    def dry_run(self, params: dict[str, Any], ctx: InjectionContext) -> str:
        params = self.validate(params)
        name = params["proxy"]
        spec = (ctx.target_config.get("proxies") or {}).get(name)
        where = (
            f"({spec.get('listen')} → {spec.get('upstream')})"
            if isinstance(spec, dict)
            else "(not defined on the target)"
        )
        until = datetime.fromtimestamp(ctx.expires_at, UTC).strftime("%H:%M:%S UTC")
        return (
            f"{self.effect(params)} on proxy {name!r} {where} "
            f"for {_num(ctx.intensity * 100)}% of connections until {until}"
        )

    def inject(self, params: dict[str, Any], ctx: InjectionContext) -> dict[str, Any]:
        params = self.validate(params, ctx.target_config)
        manager = self._manager(ctx)
        name = params["proxy"]
        spec = ctx.target_config["proxies"][name]
        try:
            rule = ProxyRule(
                id=f"fault-{ctx.fault_id}",
                kind=self.kind,  # type: ignore[arg-type]
                share=ctx.intensity,
                expires_at=ctx.expires_at,
                direction=params["direction"],
                **self.rule_fields(params),
            )
        except ValueError as exc:
            raise InjectionError(f"cannot build the proxy rule: {exc}") from None
        key = proxy_key(ctx.target_name, name)
        try:
            manager.ensure_proxy(key, spec["listen"], spec["upstream"])
            manager.set_rule(key, rule)
        except KeyError as exc:
            raise InjectionError(f"proxy {name!r} in the target config lacks {exc}") from None
        except ProxyError:
            raise
        except Exception as exc:  # a timeout or loop failure: surface it as a fault error
            raise InjectionError(f"could not apply the rule on proxy {name!r}: {exc}") from exc
        return {"proxy": key, "rule_id": rule.id}

    def revert(self, handle: dict[str, Any], ctx: InjectionContext) -> None:
        # remove_rule is idempotent and tolerates a missing proxy (e.g. after an agent
        # restart, when the rule died with the old process anyway).
        self._manager(ctx).remove_rule(handle["proxy"], handle["rule_id"])

    @staticmethod
    def _manager(ctx: InjectionContext) -> ProxyManager:
        manager = getattr(ctx.runtime, "proxies", None)
        if manager is None:
            raise InjectionError(
                "network faults run inside the target's agent: ctx.runtime.proxies "
                "(a ProxyManager) is missing"
            )
        return manager


class LatencyInjector(_ProxyFaultInjector):
    name = "network.latency"
    summary = "Delay bytes through a proxy by a fixed latency, optionally with uniform jitter."
    params_model = LatencyParams
    kind = "latency"

    def rule_fields(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"latency_ms": params["latency_ms"], "jitter_ms": params["jitter_ms"]}

    def effect(self, params: dict[str, Any]) -> str:
        jitter = f" (±{_num(params['jitter_ms'])} ms)" if params["jitter_ms"] else ""
        return (
            f"add {_num(params['latency_ms'])} ms{jitter} latency to "
            f"{_traffic(params['direction'])}"
        )


class BandwidthInjector(_ProxyFaultInjector):
    name = "network.bandwidth"
    summary = "Throttle each affected connection to a fixed rate (token bucket)."
    params_model = BandwidthParams
    kind = "bandwidth"

    def rule_fields(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"rate_kbps": params["rate_kbps"]}

    def effect(self, params: dict[str, Any]) -> str:
        return (
            f"limit {_traffic(params['direction'])} to {_num(params['rate_kbps'])} KiB/s "
            "per connection"
        )


class ResetPeerInjector(_ProxyFaultInjector):
    name = "network.reset_peer"
    summary = "Abort connections with a TCP RST, new ones and those already open."
    params_model = ResetPeerParams
    kind = "reset_peer"

    def rule_fields(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"reset_after_ms": params["reset_after_ms"]}

    def effect(self, params: dict[str, Any]) -> str:
        after = params["reset_after_ms"]
        when = f"{_num(after)} ms after" if after else "as soon as"
        return f"reset connections with a TCP RST {when} they open or the fault starts"


class BlackholeInjector(_ProxyFaultInjector):
    name = "network.blackhole"
    summary = "Silently drop bytes; hold the connection open or close it after a delay."
    params_model = BlackholeParams
    kind = "blackhole"

    def rule_fields(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"close_after_ms": params["close_after_ms"]}

    def effect(self, params: dict[str, Any]) -> str:
        close = params["close_after_ms"]
        then = (
            f"close connections after {_num(close)} ms"
            if close is not None
            else "hold connections open"
        )
        return f"silently drop {_traffic(params['direction'])} and {then}"
