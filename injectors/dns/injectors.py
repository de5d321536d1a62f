"""The DNS fault types: each one is a rule on the target's DNS responder.

The target's ``config.dns`` (``{"listen": "127.0.0.1:5353", "upstream": "10.0.0.2:53"}``)
names a forwarder the agent hosts; the application must use its ``listen`` address as
its resolver. The injectors only validate, describe and translate parameters into a
:class:`DnsRule` that carries the fault's ``expires_at``, so it ends on time by itself.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from pydantic import Field, field_validator

from injectors.base import FieldError, InjectionContext, InvalidParams, Params
from injectors.dns.server import DnsRule, dns_key, normalise_name
from injectors.rule_faults import RuleFaultInjector

__all__ = [
    "DnsDelayInjector",
    "DnsDelayParams",
    "DnsNamesParams",
    "NxdomainInjector",
    "ServfailInjector",
]

#: A resolver that takes longer than this is simply down; clients gave up long before.
MAX_MS = 60_000
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


class DnsNamesParams(Params):
    names: list[str] = Field(
        min_length=1,
        max_length=100,
        description="exact names, or '*.suffix' for every name below suffix (not suffix itself)",
    )

    @field_validator("names")
    @classmethod
    def _valid_names(cls, value: list[str]) -> list[str]:
        out = []
        for raw in value:
            name = normalise_name(raw)
            labels = name[2:].split(".") if name.startswith("*.") else name.split(".")
            if not name or len(name) > 253 or not all(_LABEL.match(label) for label in labels):
                raise ValueError(
                    f"{raw!r} is not a DNS name or '*.suffix' wildcard ('*' only as a whole "
                    "first label)"
                )
            out.append(name)
        return out


class DnsDelayParams(DnsNamesParams):
    delay_ms: float = Field(gt=0, le=MAX_MS, description="hold each matching query this long")
    jitter_ms: float = Field(default=0, ge=0, le=MAX_MS, description="uniform ± spread")


def _num(value: float) -> str:
    return f"{value:g}"


class _DnsFaultInjector(RuleFaultInjector):
    """Target checks and the dry-run sentence frame of the DNS responder faults."""

    family = "dns"
    runtime_attr = "dns"
    manager_label = "a DnsManager"
    rule_class = DnsRule
    rule_label = "DNS rule"
    handle_key = "responder"

    def check_target(self, params: dict[str, Any], target_config: dict[str, Any]) -> None:
        spec = target_config.get("dns")
        if not isinstance(spec, dict):
            reason = "the target defines no DNS responder (config.dns is missing)"
            raise InvalidParams([FieldError("", reason)])
        missing = [k for k in ("listen", "upstream") if not isinstance(spec.get(k), str)]
        if missing:
            reason = f"the target's config.dns lacks {' and '.join(missing)}"
            raise InvalidParams([FieldError("", reason)])

    def match_fields(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"names": tuple(params["names"])}

    def listener(self, params: dict[str, Any], ctx: InjectionContext) -> tuple[str, dict, str]:
        return dns_key(ctx.target_name), ctx.target_config["dns"], "the DNS responder"

    def effect(self, params: dict[str, Any]) -> str:
        raise NotImplementedError

    def dry_run(self, params: dict[str, Any], ctx: InjectionContext) -> str:
        params = self.validate(params)
        spec = ctx.target_config.get("dns")
        where = (
            f"on the DNS responder {spec.get('listen')} (forwarding to {spec.get('upstream')})"
            if isinstance(spec, dict)
            else "on the target's DNS responder (config.dns is not defined)"
        )
        names = ", ".join(repr(n) for n in params["names"])
        until = datetime.fromtimestamp(ctx.expires_at, UTC).strftime("%H:%M:%S UTC")
        return (
            f"{self.effect(params)} for {_num(ctx.intensity * 100)}% of queries for {names} "
            f"{where} until {until}"
        )


class NxdomainInjector(_DnsFaultInjector):
    name = "dns.nxdomain"
    summary = "Answer queries for chosen names with NXDOMAIN (the name does not exist)."
    params_model = DnsNamesParams
    kind = "nxdomain"

    def effect(self, params: dict[str, Any]) -> str:
        return "answer NXDOMAIN without asking the upstream"


class ServfailInjector(_DnsFaultInjector):
    name = "dns.servfail"
    summary = "Answer queries for chosen names with SERVFAIL (the resolver failed)."
    params_model = DnsNamesParams
    kind = "servfail"

    def effect(self, params: dict[str, Any]) -> str:
        return "answer SERVFAIL without asking the upstream"


class DnsDelayInjector(_DnsFaultInjector):
    name = "dns.delay"
    summary = "Hold queries for chosen names before forwarding them."
    params_model = DnsDelayParams
    kind = "delay"

    def rule_fields(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"delay_ms": params["delay_ms"], "jitter_ms": params["jitter_ms"]}

    def effect(self, params: dict[str, Any]) -> str:
        jitter = f" (±{_num(params['jitter_ms'])} ms)" if params["jitter_ms"] else ""
        return f"hold the query {_num(params['delay_ms'])} ms{jitter} before forwarding it"
