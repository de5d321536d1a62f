"""Encryption at rest for every stored secret: notification channel URLs and keys,
target credentials (database DSNs, AWS keys).

A Slack webhook URL or a database DSN with a password *is* a credential. So it is stored
as a Fernet token (AES-128-CBC + HMAC-SHA256, from ``cryptography``), never in clear, and
a database dump alone does not leak it.

The key is derived with HKDF-SHA256 from ``SCEP_SECRETS_KEY`` (or its older spelling
``SCEP_SECRET_KEY``) when set, else from Django's ``SECRET_KEY``, so there is no extra key
file to lose. Rotation: old keys listed in Django's ``SECRET_KEY_FALLBACKS`` still decrypt
(``MultiFernet``); every save re-encrypts with the current key.

A secret may instead be a *reference*, stored as written: ``env:NAME`` reads the
environment variable NAME and ``file:/path`` the file's contents (stripped) when the
secret is used (:func:`resolve_reference`), so the value itself never reaches the
database at all.
"""

from __future__ import annotations

import base64
import logging
import os
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

__all__ = [
    "PREFIX",
    "SecretUnavailable",
    "decrypt",
    "encrypt",
    "is_encrypted",
    "is_reference",
    "resolve_reference",
]

log = logging.getLogger(__name__)

#: Marks a stored value as ours (and versions the scheme should it ever change).
PREFIX = "fernet1:"
# Kept from when only notifications encrypted: changing them would orphan stored rows.
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
            "stored secrets need the 'cryptography' package: pip install 'cryptography>=42'"
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
        getattr(settings, "SCEP_SECRETS_KEY", None)
        or os.environ.get("SCEP_SECRETS_KEY")
        or getattr(settings, "SCEP_SECRET_KEY", None)
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
            "stored secret cannot be decrypted: SECRET_KEY/SCEP_SECRETS_KEY changed "
            "without the old key in SECRET_KEY_FALLBACKS"
        ) from None


def is_reference(value: str) -> bool:
    """True for ``env:NAME`` and ``file:/path``: pointers to a secret kept elsewhere."""
    return isinstance(value, str) and value.startswith(("env:", "file:"))


def resolve_reference(value: str) -> str:
    """The secret a value stands for: the variable or file it references, else itself.

    Raises SecretUnavailable naming the variable or file (never a value) when it is
    missing, so a misconfigured worker fails with a message an operator can act on.
    """
    if not isinstance(value, str):
        return value
    if value.startswith("env:"):
        name = value[4:]
        if not name or name not in os.environ:
            raise SecretUnavailable(f"environment variable {name!r} (from {value!r}) is not set")
        return os.environ[name]
    if value.startswith("file:"):
        path = value[5:]
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.read().strip()
        except OSError as exc:
            reason = exc.strerror or "unreadable"
            raise SecretUnavailable(f"secret file {path!r} cannot be read: {reason}") from None
    return value
