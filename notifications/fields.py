"""A model field whose column holds ciphertext while Python code sees clear text."""

from __future__ import annotations

import logging
from typing import Any

from django.db import models

from notifications.crypto import SecretUnavailable, decrypt, encrypt

__all__ = ["EncryptedTextField"]

log = logging.getLogger(__name__)


class EncryptedTextField(models.TextField):
    """Encrypts on the way to the database and decrypts on the way back.

    Fernet tokens are randomised, so the column cannot be filtered on: it is meant for
    secrets that are only ever read by the code that uses them. A value that no longer
    decrypts (the key changed) reads as the empty string, so one bad row does not break
    listings; sending then fails with a clear error instead of posting garbage.
    """

    description = "Text encrypted at rest (Fernet)"

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> str:
        if value is None:
            return ""
        try:
            return decrypt(value)
        except SecretUnavailable as exc:
            log.warning("%s.%s: %s", self.model.__name__, self.name, exc)
            return ""

    def get_prep_value(self, value: Any) -> str:
        value = super().get_prep_value(value)
        return encrypt(value or "")
