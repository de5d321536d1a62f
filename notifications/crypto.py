"""Moved to :mod:`scep.crypto` (shared by every stored secret); kept as an alias."""

from scep.crypto import *  # noqa: F403
from scep.crypto import PREFIX, SecretUnavailable, decrypt, encrypt, is_encrypted

__all__ = ["PREFIX", "SecretUnavailable", "decrypt", "encrypt", "is_encrypted"]
