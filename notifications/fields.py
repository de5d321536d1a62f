"""Moved to :mod:`scep.fields`; kept because migration 0001 imports it from here."""

from scep.fields import EncryptedTextField

__all__ = ["EncryptedTextField"]
