"""Encryption at rest for channel secrets (webhook URLs, PagerDuty routing keys).

A Slack or generic webhook URL *is* a credential: whoever knows it can post. So it is
stored as a Fernet token (AES-128-CBC + HMAC-SHA256, from ``cryptography``), never in
clear, and a database dump alone does not leak it.

The key is derived with HKDF-SHA256 from ``SCEP_SECRET_KEY`` when set, else from Django's
``SECRET_KEY``, so there is no extra key file to lose. Rotation: old keys listed in
Django's ``SECRET_KEY_FALLBACKS`` still decrypt (``MultiFernet``); every save re-encrypts
with the current key.
"""

from __future__ import annotations

import base64
import logging
import os
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

__all__ = ["PREFIX", "SecretUnavailable", "decrypt", "encrypt", "is_encrypted"]

log = logging.getLogger(__name__)

#: Marks a stored value as ours (and versions the scheme should it ever change).
PREFIX = "fernet1:"
_SALT = b"scep.notifications"
_INFO = b"channel-secrets-v1"


class SecretUnavailable(Exception):
    """A stored secret cannot be decrypted with the current (or fallback) keys."""


def _crypto() -> Any:
    """The ``cryptography`` package, imported on first use.

    Lazily, so that the app (and Django with it) still loads where the package is
    missing; only storing or reading a channel secret then fails, with this message.
    """
    try:
        import cryptography.fernet
        import cryptography.hazmat.primitives.hashes
        import cryptography.hazmat.primitives.kdf.hkdf
    except ImportError:  # pragma: no cover - depends on the installation
        raise ImproperlyConfigured(
            "notification channel secrets need the 'cryptography' package: pip install "
            "'cryptography>=42'"
        ) from None
    return cryptography


def _derive(secret: str) -> Any:
    c = _crypto()
    hkdf = c.hazmat.primitives.kdf.hkdf.HKDF(
        algorithm=c.hazmat.primitives.hashes.SHA256(), length=32, salt=_SALT, info=_INFO
    )
    return c.fernet.Fernet(base64.urlsafe_b64encode(hkdf.derive(secret.encode())))


def _secrets() -> tuple[str, ...]:
    primary = (
        getattr(settings, "SCEP_SECRET_KEY", None)
        or os.environ.get("SCEP_SECRET_KEY")
        or settings.SECRET_KEY
    )
    fallbacks = tuple(getattr(settings, "SECRET_KEY_FALLBACKS", ()) or ())
    if primary != settings.SECRET_KEY:
        fallbacks = (settings.SECRET_KEY, *fallbacks)
    return (primary, *fallbacks)


@lru_cache(maxsize=4)
def _fernet(secrets: tuple[str, ...]) -> Any:
    return _crypto().fernet.MultiFernet([_derive(s) for s in secrets])


def is_encrypted(value: str) -> bool:
    return value.startswith(PREFIX)


def encrypt(plain: str) -> str:
    """The stored form of ``plain``; the empty string stays empty (no secret set)."""
    if not plain:
        return ""
    token = _fernet(_secrets()).encrypt(plain.encode())
    return PREFIX + token.decode()


def decrypt(stored: str) -> str:
    """The clear value of a stored secret. Raises SecretUnavailable on a wrong key."""
    if not stored:
        return ""
    if not is_encrypted(stored):
        raise SecretUnavailable("stored secret is not in the encrypted format")
    try:
        return _fernet(_secrets()).decrypt(stored[len(PREFIX) :].encode()).decode()
    except _crypto().fernet.InvalidToken:
        raise SecretUnavailable(
            "stored secret cannot be decrypted: SECRET_KEY/SCEP_SECRET_KEY changed "
            "without the old key in SECRET_KEY_FALLBACKS"
        ) from None
