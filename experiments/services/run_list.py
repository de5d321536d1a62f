"""Pages of the run list served from a cache that can never be stale.

The run list is the API's busiest read (dashboards and CLIs poll it), and almost every
poll asks for a page that has not changed since the last one. Rendering it costs two
queries and fifty rows of work; checking that it has not changed costs one read of a
counter that the database itself moves forward in the same transaction as any change to
what the list shows (migration ``experiments.0007_run_list_version``). A page is cached
under that counter, so a reader that sees the new counter never gets an old page.

Where the counter is missing (a database without the triggers), nothing is cached.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection

log = logging.getLogger(__name__)

TABLE = "scep_run_list_version"


def version() -> int | None:
    """The current change count, or None where the database keeps none."""
    if connection.vendor not in ("postgresql", "sqlite"):
        return None
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT version FROM {TABLE} WHERE id = 1")
            row = cursor.fetchone()
    except DatabaseError:  # the table is missing: the migration has not run here
        return None
    return int(row[0]) if row else None


def page_key(counter: int, teams: Sequence[int] | None, request_url: str) -> str:
    """Cache key of one page as one user sees it: the counter, the user's teams (None is
    every team) and the full URL (filters, offset, limit; the host for the next/previous
    links)."""
    scope = "all" if teams is None else ",".join(str(t) for t in sorted(teams))
    digest = hashlib.blake2b(f"{scope}|{request_url}".encode(), digest_size=16).hexdigest()
    return f"scep:runlist:{counter}:{digest}"


def cached_page(teams: Sequence[int] | None, request_url: str, build: Callable[[], Any]) -> Any:
    """The page from the cache when nothing listed changed since it was built, else
    ``build()`` (stored for the next reader). The counter is read before the rows, so a
    stored page is never older than its key. A cache that fails (Redis restarting) only
    costs the rebuild. Pages are shared only outside transactions (see below)."""
    if not settings.SCEP_API_LIST_CACHE or connection.in_atomic_block:
        # Inside a transaction the counter may carry this transaction's own uncommitted
        # changes, which a rollback would hand to another page later: build, never share.
        return build()
    counter = version()
    if counter is None:
        return build()
    key = page_key(counter, teams, request_url)
    try:
        page = cache.get(key)
    except Exception:
        log.warning("run list cache unavailable; building the page", exc_info=True)
        return build()
    if page is not None:
        return page
    page = build()
    try:
        cache.set(key, page, settings.SCEP_API_LIST_CACHE_TTL_S)
    except Exception:
        log.warning("run list cache unavailable; page not stored", exc_info=True)
    return page
