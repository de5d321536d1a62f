"""Query-parameter parsing shared by the API views.

Found by the schemathesis run: ``"²".isdigit()`` is true but ``int("²")`` fails, and an id
beyond 64 bits overflows SQLite's INTEGER inside a related-field filter. Both were 500s;
an id that cannot exist is simply "no such id".
"""

from __future__ import annotations

__all__ = ["MAX_ID", "parse_id"]

#: Largest value of a BigAutoField primary key (signed 64-bit).
MAX_ID = 2**63 - 1


def parse_id(value: str) -> int | None:
    """The id ``value`` names, or None when it is not a plain decimal id in range."""
    if not (value.isascii() and value.isdigit()):
        return None
    number = int(value)
    return number if number <= MAX_ID else None
