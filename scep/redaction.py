"""A logging filter that takes credentials out of log lines before any handler sees them.

Secrets are kept out of messages at the source where we can (DSNs go through
``injectors.database.common.redact``, channel URLs through ``notifications.redact``), but
a driver's exception text or a third-party library can still print one. This is the net
under those: patterns for the shapes credentials take in text — a password in a URL, a
``password=`` / ``secret=`` / ``token=`` pair, an ``Authorization`` header, an AWS access
key id, a Slack webhook path.
"""

from __future__ import annotations

import logging
import re

__all__ = ["MASK", "SecretRedactingFilter", "redact_secrets"]

MASK = "****"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host → scheme://user:****@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)([^\s@/]+)(@)", re.I), rf"\1{MASK}\3"),
    # password=…, secret: …, token=…, api_key=… (quoted or bare)
    (
        re.compile(
            r"(\b(?:password|passwd|pwd|secret|secret_access_key|token|api_key|apikey|"
            r"routing_key|session_token)\b[\"']?\s*[=:]\s*[\"']?)([^\s\"',;&]+)",
            re.I,
        ),
        rf"\1{MASK}",
    ),
    (re.compile(r"(\bAuthorization\s*[:=]\s*(?:Token|Bearer|Basic)\s+)(\S+)", re.I), rf"\1{MASK}"),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{12,}\b"), MASK),
    (re.compile(r"(hooks\.slack\.com/services/)[\w/]+", re.I), rf"\1{MASK}"),
)


def redact_secrets(text: str) -> str:
    """``text`` with every credential-shaped part replaced by ``****``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class SecretRedactingFilter(logging.Filter):
    """Rewrites each record's message (and exception text) with secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it for the formatter to report
            return True
        cleaned = redact_secrets(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_secrets(logging.Formatter().formatException(record.exc_info))
        return True
