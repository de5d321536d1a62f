"""The network fault types: each one is a rule on one of the target's fault proxies.

The injectors stay thin on purpose: they validate, describe and translate parameters into
a :class:`ProxyRule`; the agent's :class:`ProxyManager` does the work. Because every rule
carries the fault's ``expires_at``, a fault whose revert never arrives still ends on time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from injectors.base import FieldError, InjectionContext, InvalidParams, Params
from injectors.listener import describe
from injectors.network.proxy import ProxyRule, proxy_key
from injectors.rule_faults import RuleFaultInjector

__all__ = [
    "BandwidthInjector",
    "BandwidthParams",
    "BlackholeInjector",
    "BlackholeParams",
    "DownInjector",
    "DownParams",
    "LatencyInjector",
    "LatencyParams",
    "LimitDataInjector",
    "LimitDataParams",
    "ResetPeerInjector",
    "ResetPeerParams",
    "SlicerInjector",
    "SlicerParams",
    "SlowCloseInjector",
    "SlowCloseParams",
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


class SlicerParams(ProxyParams):
    size_bytes: int = Field(gt=0, le=65536, description="average bytes per slice")
    size_variation: int = Field(
        default=0, ge=0, description="uniform ± spread of the slice size; < size_bytes"
    )
    delay_us: float = Field(
        default=0, ge=0, le=1_000_000, description="pause between slices, microseconds"
    )

    @field_validator("size_variation")
    @classmethod
    def _smaller_than_size(cls, value: int, info: ValidationInfo) -> int:
        # A variation as large as the size could produce empty slices, i.e. no progress.
        size = info.data.get("size_bytes")
        if size is not None and value >= size:
            raise ValueError(f"must be smaller than size_bytes ({size})")
        return value


class SlowCloseParams(ProxyParams):
    delay_ms: float = Field(gt=0, le=MAX_MS, description="how long the close (EOF) waits")


class LimitDataParams(ProxyParams):
    bytes: int = Field(ge=0, description="bytes let through per connection before closing")


class DownParams(Params):
    """No direction: a service that is down refuses whole connections."""

    proxy: str = Field(min_length=1, description="name of one of the target's proxies")


def _num(value: float) -> str:
    """300.0 → "300", 12.5 → "12.5": dry-run sentences should read like a human wrote them."""
    return f"{value:g}"


def _traffic(direction: str) -> str:
    return "traffic in both directions" if direction == "both" else f"{direction} traffic"


class _ProxyFaultInjector(RuleFaultInjector):
    """Target checks and the dry-run sentence frame of the TCP proxy faults."""

    family = "network"
    runtime_attr = "proxies"
    manager_label = "a ProxyManager"
    rule_class = ProxyRule
    rule_label = "proxy rule"

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

    def match_fields(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"direction": params.get("direction", "both")}

    def listener(self, params: dict[str, Any], ctx: InjectionContext) -> tuple[str, dict, str]:
        name = params["proxy"]
        spec = ctx.target_config["proxies"][name]
        return proxy_key(ctx.target_name, name), spec, f"proxy {name!r}"

    def effect(self, params: dict[str, Any]) -> str:
        """The verb phrase of the dry-run sentence, e.g. "add 300 ms latency to …"."""
        raise NotImplementedError

    def dry_run(self, params: dict[str, Any], ctx: InjectionContext) -> str:
        params = self.validate(params)
        name = params["proxy"]
        where = describe((ctx.target_config.get("proxies") or {}).get(name))
        until = datetime.fromtimestamp(ctx.expires_at, UTC).strftime("%H:%M:%S UTC")
        return (
            f"{self.effect(params)} on proxy {name!r} {where} "
            f"for {_num(ctx.intensity * 100)}% of connections until {until}"
        )


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


class SlicerInjector(_ProxyFaultInjector):
    name = "network.slicer"
    summary = "Cut the stream into small writes with a pause between them (partial reads)."
    params_model = SlicerParams
    kind = "slicer"

    def rule_fields(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "size_bytes": params["size_bytes"],
            "size_variation": params["size_variation"],
            "delay_us": params["delay_us"],
        }

    def effect(self, params: dict[str, Any]) -> str:
        spread = f" ± {params['size_variation']}" if params["size_variation"] else ""
        return (
            f"split {_traffic(params['direction'])} into writes of {params['size_bytes']}"
            f"{spread} bytes with {_num(params['delay_us'])} µs between them"
        )


class SlowCloseInjector(_ProxyFaultInjector):
    name = "network.slow_close"
    summary = "Forward the connection's close (FIN) late, after all its data."
    params_model = SlowCloseParams
    kind = "slow_close"

    def rule_fields(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"close_delay_ms": params["delay_ms"]}

    def effect(self, params: dict[str, Any]) -> str:
        return (
            f"delay the close (FIN) of {_traffic(params['direction'])} by "
            f"{_num(params['delay_ms'])} ms"
        )


class LimitDataInjector(_ProxyFaultInjector):
    name = "network.limit_data"
    summary = "Close a connection once a number of bytes has passed in one direction."
    params_model = LimitDataParams
    kind = "limit_data"

    def rule_fields(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"limit_bytes": params["bytes"]}

    def effect(self, params: dict[str, Any]) -> str:
        return (
            f"close connections (FIN both ways) once {params['bytes']} bytes of "
            f"{_traffic(params['direction'])} have passed"
        )


class DownInjector(_ProxyFaultInjector):
    name = "network.down"
    summary = "Act as if the dependency were down: RST new connections and reset open ones."
    params_model = DownParams
    kind = "down"

    def effect(self, params: dict[str, Any]) -> str:
        return "answer new connections with a TCP RST and reset open ones"
