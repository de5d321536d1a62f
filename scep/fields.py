"""Model fields whose column holds ciphertext while Python code sees clear values."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.db import models

from scep.crypto import SecretUnavailable, decrypt, encrypt

__all__ = ["EncryptedJSONField", "EncryptedTextField"]

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


class EncryptedJSONField(models.TextField):
    """A JSON document (e.g. a target's credentials) encrypted as a whole.

    Stored as one Fernet token of the JSON text, so neither the values nor which keys
    are set can be read from the database. Python sees a dict; an undecryptable value
    reads as ``{}`` (logged), like :class:`EncryptedTextField`.
    """

    description = "JSON encrypted at rest (Fernet)"

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> dict[str, Any]:
        if not value:
            return {}
        try:
            return json.loads(decrypt(value))
        except (SecretUnavailable, ValueError) as exc:
            log.warning("%s.%s: %s", self.model.__name__, self.name, exc)
            return {}

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    def get_prep_value(self, value: Any) -> str:
        if value in (None, "", {}):
            return ""
        return encrypt(json.dumps(value, sort_keys=True))

    def value_to_string(self, obj: Any) -> str:
        return json.dumps(self.value_from_object(obj))
