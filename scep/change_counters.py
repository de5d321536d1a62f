"""Read the database's change counters (migration ``experiments.0007_change_counters``).

Triggers move a counter in the same transaction as any change it watches, so an entry
cached under the counter value it was built at can never be served stale: one cheap read
of the counters tells every cache of a request whether its entry still holds. The read
is made once per request and kept on it.
"""

from __future__ import annotations

from typing import Any

from django.db import DatabaseError, connection

TABLE = "scep_change_counter"
_ON_REQUEST = "_scep_change_counters"


def read() -> dict[str, int] | None:
    """Every counter's current value; None where the database keeps none."""
    if connection.vendor not in ("postgresql", "sqlite"):
        return None
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT name, version FROM {TABLE}")
            rows = cursor.fetchall()
    except DatabaseError:  # the table is missing: the migration has not run here
        return None
    return {name: int(version) for name, version in rows} or None


def for_request(request: Any) -> dict[str, int] | None:
    """The counters as this request first read them (one query per request).

    Values are only handed out outside transactions: inside one they may include the
    transaction's own uncommitted changes, and a rollback would let a later, different
    state reach the same value.
    """
    if request is None or connection.in_atomic_block:
        return None
    http_request = getattr(request, "_request", request)  # DRF wraps Django's request
    if not hasattr(http_request, _ON_REQUEST):
        setattr(http_request, _ON_REQUEST, read())
    return getattr(http_request, _ON_REQUEST)
