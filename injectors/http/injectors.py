"""The HTTP fault types: each one is a rule on one of the target's HTTP (L7) proxies.

Like the network faults they only validate, describe and translate parameters into an
:class:`HttpRule`; the agent's :class:`HttpProxyManager` does the work. The rule carries
the fault's ``expires_at``, so a fault whose revert never arrives still ends on time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import Field, field_validator

from injectors.base import FieldError, InjectionContext, InvalidParams, Params
from injectors.http.proxy import HttpRule
from injectors.listener import describe
from injectors.network.proxy import proxy_key
from injectors.rule_faults import RuleFaultInjector

__all__ = ["AbortInjector", "AbortParams", "DelayInjector", "DelayParams"]

#: Ten minutes: a longer hold is a hang, and every held request keeps a connection open.
MAX_MS = 600_000
_TOKEN_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~")


class HttpMatchParams(Params):
    """Which proxy, and which requests: every given criterion must match."""

    proxy: str = Field(min_length=1, description="name of one of the target's http_proxies")
    method: str | None = Field(
        default=None, description="HTTP method, case-insensitive; omitted = any method"
    )
    path: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "shell-style glob (fnmatch: * ? [..]) over the request path without the query "
            "string; * also crosses '/'; omitted = any path"
        ),
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="header name (case-insensitive) → glob over its value; all must match",
    )

    @field_validator("method")
    @classmethod
    def _method_token(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value or not set(value) <= _TOKEN_CHARS:
            raise ValueError(f"{value!r} is not an HTTP method")
        return value.upper()

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [name for name in value if not name or not set(name) <= _TOKEN_CHARS]
        if bad:
            raise ValueError(f"not valid header names: {', '.join(map(repr, bad))}")
        return value


class AbortParams(HttpMatchParams):
    status: int = Field(default=503, ge=200, le=599, description="status to answer with")
    body: str = Field(default="", max_length=65536, description="response body (text/plain)")
    drop: bool = Field(
        default=False, description="close the connection without any response instead"
    )


class DelayParams(HttpMatchParams):
    delay_ms: float = Field(gt=0, le=MAX_MS, description="hold each request this long")
    jitter_ms: float = Field(default=0, ge=0, le=MAX_MS, description="uniform ± spread")


def _num(value: float) -> str:
    return f"{value:g}"


def _which_requests(params: dict[str, Any]) -> str:
    """ "GET requests whose path matches '/api/*' and …" — the match, spelled out."""
    subject = f"{params['method']} requests" if params["method"] else "requests"
    conditions = []
    if params["path"] is not None:
        conditions.append(f"path matches the glob {params['path']!r}")
    for name, pattern in sorted(params["headers"].items()):
        conditions.append(f"header {name} matches {pattern!r}")
    return f"{subject} whose {' and whose '.join(conditions)}" if conditions else subject


class _HttpFaultInjector(RuleFaultInjector):
    """Target checks and the dry-run sentence frame of the HTTP proxy faults."""

    family = "http"
    runtime_attr = "http_proxies"
    manager_label = "an HttpProxyManager"
    rule_class = HttpRule
    rule_label = "HTTP rule"

    def check_target(self, params: dict[str, Any], target_config: dict[str, Any]) -> None:
        proxies = target_config.get("http_proxies") or {}
        if not proxies:
            reason = "the target defines no HTTP proxies (config.http_proxies is empty)"
            raise InvalidParams([FieldError("proxy", reason)])
        if params["proxy"] not in proxies:
            known = ", ".join(sorted(proxies))
            reason = f"unknown HTTP proxy {params['proxy']!r}; the target defines: {known}"
            raise InvalidParams([FieldError("proxy", reason)])

    def match_fields(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "method": params["method"],
            "path": params["path"],
            "headers": tuple(sorted(params["headers"].items())),
        }

    def listener(self, params: dict[str, Any], ctx: InjectionContext) -> tuple[str, dict, str]:
        name = params["proxy"]
        spec = ctx.target_config["http_proxies"][name]
        return proxy_key(ctx.target_name, name), spec, f"HTTP proxy {name!r}"

    def effect(self, params: dict[str, Any]) -> str:
        raise NotImplementedError

    def dry_run(self, params: dict[str, Any], ctx: InjectionContext) -> str:
        params = self.validate(params)
        name = params["proxy"]
        where = describe((ctx.target_config.get("http_proxies") or {}).get(name))
        until = datetime.fromtimestamp(ctx.expires_at, UTC).strftime("%H:%M:%S UTC")
        return (
            f"{self.effect(params)} for {_num(ctx.intensity * 100)}% of "
            f"{_which_requests(params)} on HTTP proxy {name!r} {where} until {until}"
        )


class AbortInjector(_HttpFaultInjector):
    name = "http.abort"
    summary = "Answer matching requests with an error status, or drop their connection."
    params_model = AbortParams
    kind = "abort"

    def rule_fields(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"status": params["status"], "body": params["body"], "drop": params["drop"]}

    def effect(self, params: dict[str, Any]) -> str:
        if params["drop"]:
            return "close the client connection without any response, instead of forwarding,"
        body = f" and a {len(params['body'].encode())}-byte body" if params["body"] else ""
        return f"answer HTTP {params['status']}{body} without forwarding"


class DelayInjector(_HttpFaultInjector):
    name = "http.delay"
    summary = "Hold matching requests for a while before forwarding them."
    params_model = DelayParams
    kind = "delay"

    def rule_fields(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"delay_ms": params["delay_ms"], "jitter_ms": params["jitter_ms"]}

    def effect(self, params: dict[str, Any]) -> str:
        jitter = f" (±{_num(params['jitter_ms'])} ms)" if params["jitter_ms"] else ""
        return f"hold the request {_num(params['delay_ms'])} ms{jitter} before forwarding it"
