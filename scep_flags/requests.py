"""requests integration: a transport adapter that faults outgoing calls *before* they
are sent (requests' own hooks only run after the response, too late to stop a call).

``instrument_requests(session)`` mounts :class:`FailureFlagAdapter` for http and https.
Each call evaluates flag ``http.client`` with labels ``host``, ``method``, ``path``.
Injected ``ConnectionError``/``TimeoutError`` surface as ``requests.ConnectionError`` /
``requests.Timeout`` so the application's usual error handling runs.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

from scep_flags._flag import FailureFlagError, apply, decide, http_response_parts

__all__ = ["FLAG", "FailureFlagAdapter", "instrument_requests"]

FLAG = "http.client"


def _translate(exc: FailureFlagError, request: requests.PreparedRequest) -> Exception:
    if isinstance(exc, TimeoutError):
        return requests.exceptions.Timeout(str(exc), request=request)
    if isinstance(exc, ConnectionError):
        return requests.exceptions.ConnectionError(str(exc), request=request)
    return exc


class FailureFlagAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` that consults the ``http.client`` flag first."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        url = urlsplit(request.url or "")
        labels = {"host": url.hostname or "", "method": request.method or "", "path": url.path}
        try:
            outcome = apply(decide(FLAG, labels))
        except FailureFlagError as exc:
            translated = _translate(exc, request)
            if translated is exc:
                raise
            raise translated from exc
        if outcome.has_response:
            return self._substitute(request, outcome.response)
        return super().send(request, *args, **kwargs)

    @staticmethod
    def _substitute(request: requests.PreparedRequest, value: Any) -> requests.Response:
        status, headers, body = http_response_parts(value)
        response = requests.Response()
        response.status_code = status
        response.headers = CaseInsensitiveDict(headers)
        response._content = body
        response.url = request.url or ""
        response.request = request
        response.reason = "SCEP failure flag"
        response.encoding = "utf-8"
        return response


def instrument_requests(session: requests.Session, **adapter_kwargs: Any) -> requests.Session:
    adapter = FailureFlagAdapter(**adapter_kwargs)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
