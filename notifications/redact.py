"""Keeping secret URLs and keys out of API answers, error texts and log lines.

Webhook URLs carry their credential in the path (Slack: ``/services/T…/B…/secret``), so
masking shows only the scheme and host — enough to recognise *which* service a channel
posts to, nothing that lets anyone post.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["MASK", "redact_text", "redact_url"]

MASK = "****"


def redact_url(url: str) -> str:
    """``https://hooks.slack.com/services/T0/B0/xyz`` → ``https://hooks.slack.com/…/****``.

    Scheme, host and port stay; user info, path, query and fragment go. A value that
    does not parse as a URL is masked entirely.
    """
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return MASK
    if not parts.scheme or not host:
        return MASK
    netloc = f"{host}:{port}" if port else host
    return f"{parts.scheme}://{netloc}/…/{MASK}"


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret (and of its URL path) masked.

    Error messages of HTTP clients quote the URL, sometimes normalised, so besides the
    whole value the path and query alone are masked too.
    """
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        replacement = redact_url(secret) if "://" in secret else MASK
        text = text.replace(secret, replacement)
        if "://" in secret:
            try:
                parts = urlsplit(secret)
            except ValueError:
                continue
            tail = parts.path + (f"?{parts.query}" if parts.query else "")
            if len(tail) > 1:
                text = text.replace(tail, f"/…/{MASK}")
    return text
