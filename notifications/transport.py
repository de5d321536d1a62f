"""One HTTP attempt to a channel, reported as data rather than exceptions.

The caller decides about retries from ``Outcome.retryable``: transport errors, timeouts,
408, 429 and 5xx may heal; any other 4xx (bad URL, revoked hook, wrong routing key) will
not, so retrying it only delays the error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from notifications.redact import redact_text

__all__ = ["Outcome", "post_json"]

_RETRYABLE_4XX = {408, 425, 429}


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None = None
    error: str = ""
    retryable: bool = False


def post_json(url: str, body: dict[str, Any], *, timeout: float, secrets: list[str]) -> Outcome:
    """POST ``body``; every error text is redacted against ``secrets`` before returning."""
    try:
        response = httpx.post(
            url,
            json=body,
            timeout=timeout,
            follow_redirects=False,
            headers={"User-Agent": "scep-notifications/1"},
        )
    except httpx.InvalidURL as exc:
        return Outcome(ok=False, error=redact_text(f"InvalidURL: {exc}", secrets))
    except httpx.HTTPError as exc:
        error = redact_text(f"{type(exc).__name__}: {exc}", secrets)
        return Outcome(ok=False, error=error, retryable=True)
    if 200 <= response.status_code < 300:
        return Outcome(ok=True, status_code=response.status_code)
    snippet = response.text[:200].strip()
    error = f"HTTP {response.status_code}" + (f": {snippet}" if snippet else "")
    code = response.status_code
    return Outcome(
        ok=False,
        status_code=code,
        error=redact_text(error, secrets),
        retryable=code >= 500 or code in _RETRYABLE_4XX,
    )
