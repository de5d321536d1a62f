"""The API's report of a finished run, with its metric series kept in the cache.

A report is assembled from the run row, its metric series, suggestions and events. Once a
run is terminal its series are final (the last samples are stored before the run ends),
and reading and decoding them is most of a report's cost, so they are cached per run.
Everything that can still change after the end is read fresh on every request: events
(the final transition and "report written" are added just after), suggestion statuses
(accepting one) and the analysis summary.
"""

from __future__ import annotations

from typing import Any

from django.core.cache import cache

from analysis.services import build_report, report_series

#: Seconds a finished run's series stay cached (they never go stale, this only bounds
#: memory for runs nobody looks at any more).
SERIES_TTL_S = 3600


def _key(run: Any) -> str:
    return f"scep:report-series:{run.pk}:{run.finished_at.timestamp()}"


def report(run: Any) -> dict[str, Any]:
    """The report of ``run`` as plain data (same content as ``build_report``).

    ``run`` must be freshly loaded with its experiment and target (the view's queryset
    does that), so the report is not loaded a second time.
    """
    if not run.is_terminal or run.finished_at is None:
        return build_report(run, refresh=False)
    key = _key(run)
    series = cache.get(key)
    if series is None:
        series = report_series(run)
        cache.set(key, series, SERIES_TTL_S)
    return build_report(run, refresh=False, series=series)
