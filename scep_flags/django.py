"""Django integration: ``FailureFlagMiddleware`` faults incoming requests.

Add ``"scep_flags.django.FailureFlagMiddleware"`` to ``MIDDLEWARE`` (early, so the
delay covers the whole view). Each request evaluates flag ``http.request`` with labels
``method`` and ``path`` (merged over the configured ``app_labels``): latency delays the
request, an exception propagates into Django's own handling (a 500, as a real bug
would), and a response flag answers instead of the view (see
:func:`scep_flags._flag.http_response_parts` for the shape).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse

from scep_flags._flag import apply, decide, http_response_parts

__all__ = ["FLAG", "FailureFlagMiddleware"]

FLAG = "http.request"


class FailureFlagMiddleware:
    """Synchronous middleware (Django adapts it under ASGI)."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], Any]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        outcome = apply(decide(FLAG, {"method": request.method or "", "path": request.path}))
        if outcome.has_response:
            status, headers, body = http_response_parts(outcome.response)
            response = HttpResponse(body, status=status)
            for key, value in headers.items():
                response[key] = value
            response["X-SCEP-Failure-Flag"] = ",".join(f.flag for f in outcome.fired)
            return response
        return self.get_response(request)
