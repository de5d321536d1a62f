"""httpx integration: request event hooks and transport wrappers.

* ``instrument_httpx(client)`` adds a ``request`` event hook (sync or async to match the
  client). Hooks run before the call and can delay or raise, but cannot answer in
  place of the server, so a ``response`` flag is ignored there.
* ``FailureFlagTransport(inner)`` / ``AsyncFailureFlagTransport(inner)`` wrap a transport
  and handle all three effects, response substitution included.

Both evaluate flag ``http.client`` with labels ``host``, ``method``, ``path``. Injected
``ConnectionError``/``TimeoutError`` surface as ``httpx.ConnectError``/``httpx.ReadTimeout``.
"""

from __future__ import annotations

from typing import Any, NoReturn

import httpx

from scep_flags._flag import (
    FailureFlagError,
    FlagOutcome,
    apply,
    apply_async,
    decide,
    decide_async,
    http_response_parts,
)

__all__ = [
    "FLAG",
    "AsyncFailureFlagTransport",
    "FailureFlagTransport",
    "async_request_hook",
    "instrument_httpx",
    "request_hook",
]

FLAG = "http.client"


def _labels(request: httpx.Request) -> dict[str, str]:
    return {"host": request.url.host, "method": request.method, "path": request.url.path}


def _translate(exc: FailureFlagError, request: httpx.Request) -> Exception:
    if isinstance(exc, TimeoutError):
        return httpx.ReadTimeout(str(exc), request=request)
    if isinstance(exc, ConnectionError):
        return httpx.ConnectError(str(exc), request=request)
    return exc


def _raise(exc: FailureFlagError, request: httpx.Request) -> NoReturn:
    translated = _translate(exc, request)
    if translated is exc:
        raise exc
    raise translated from exc


def _response(outcome: FlagOutcome, request: httpx.Request) -> httpx.Response:
    status, headers, body = http_response_parts(outcome.response)
    return httpx.Response(status, headers=headers, content=body, request=request)


def request_hook(request: httpx.Request) -> None:
    try:
        apply(decide(FLAG, _labels(request)))
    except FailureFlagError as exc:
        _raise(exc, request)


async def async_request_hook(request: httpx.Request) -> None:
    try:
        await apply_async(await decide_async(FLAG, _labels(request)))
    except FailureFlagError as exc:
        _raise(exc, request)


def instrument_httpx(client: httpx.Client | httpx.AsyncClient) -> Any:
    hook = async_request_hook if isinstance(client, httpx.AsyncClient) else request_hook
    hooks = client.event_hooks
    hooks["request"] = [*hooks.get("request", []), hook]
    client.event_hooks = hooks
    return client


class FailureFlagTransport(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport | None = None):
        self.inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            outcome = apply(decide(FLAG, _labels(request)))
        except FailureFlagError as exc:
            _raise(exc, request)
        if outcome.has_response:
            return _response(outcome, request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


class AsyncFailureFlagTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport | None = None):
        self.inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            outcome = await apply_async(await decide_async(FLAG, _labels(request)))
        except FailureFlagError as exc:
            _raise(exc, request)
        if outcome.has_response:
            return _response(outcome, request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()
