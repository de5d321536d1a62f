"""Pages of the run list served from a cache that can never be stale.

The run list is the API's busiest read (dashboards and CLIs poll it), and almost every
poll asks for a page that has not changed since the last one. Rendering it costs two
queries and fifty rows of work; knowing that it has not changed costs nothing extra: the
database moves its ``runs`` change counter in the same transaction as any change to
what the list shows (``scep.change_counters``), and the request reads the counters once
anyway. A page is cached under the counter value it was built at, before its rows were
read, so a reader that sees a new value never gets an old page.

Where there is no counter (another database, or inside a transaction) nothing is cached.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings
from django.core.cache import cache

from scep import change_counters

log = logging.getLogger(__name__)


def version() -> int | None:
    """The ``runs`` counter now, or None where the database keeps none."""
    counters = change_counters.read()
    return None if counters is None else counters.get("runs")


def page_key(counter: int, teams: Sequence[int] | None, request_url: str) -> str:
    """Cache key of one page as one user sees it: the counter, the user's teams (None is
    every team) and the full URL (filters, offset, limit; the host for the next/previous
    links)."""
    scope = "all" if teams is None else ",".join(str(t) for t in sorted(teams))
    digest = hashlib.blake2b(f"{scope}|{request_url}".encode(), digest_size=16).hexdigest()
    return f"scep:runlist:{counter}:{digest}"


def cached_page(
    request: Any, teams: Sequence[int] | None, request_url: str, build: Callable[[], Any]
) -> Any:
    """The page from the cache when nothing listed changed since it was built, else
    ``build()`` (stored for the next reader). A cache that fails (Redis restarting)
    only costs the rebuild."""
    if not settings.SCEP_API_LIST_CACHE:
        return build()
    counters = change_counters.for_request(request)
    counter = None if counters is None else counters.get("runs")
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
