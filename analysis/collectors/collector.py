"""One call per tick that yields a value for every metric of a spec.

The orchestrator calls :meth:`MetricCollector.collect` every ``interval`` seconds during
baseline, fault and recovery. Three properties matter more than anything else here:

* **It never raises for target-side trouble.** A fault that kills the target is the
  point of the experiment, not an error: the metric is ``None`` for that tick and the
  reason goes to :attr:`MetricCollector.last_errors`.
* **It returns in bounded time** (about the largest configured timeout) even when a
  target accepts connections and then hangs, so ticks stay on schedule.
* **It costs as little load as the spec allows.** Entries with an identical ``probe``
  block share one :class:`~analysis.collectors.probe.Probe` (``latency_p95`` and
  ``error_rate`` of the same endpoint come from the same requests, which also keeps them
  consistent), and entries scraping the same URL share one fetch per tick. All groups of
  a tick run concurrently.

``prometheus`` and ``cloudwatch`` entries are queries against a metrics backend: each is
its own group (one query per tick), read with the same never-raise, bounded-time rules.
They can also be read after the fact for a whole phase with :meth:`collect_range`,
which the backend answers from its stored history.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from analysis.collectors.cloudwatch import CloudWatchQuery
from analysis.collectors.errors import CollectionError
from analysis.collectors.probe import MEASURES, Probe, ProbeSample
from analysis.collectors.prometheus import PrometheusQuery
from analysis.collectors.scrape import Exposition, Scraper, ScrapeSeries

__all__ = ["MetricCollector"]

# How long past the largest timeout a tick waits for its groups before giving up on them.
_GRACE = 0.25


@dataclass
class _ProbeGroup:
    probe: Probe
    measures: dict[str, str]  # metric name -> measure
    pending: Future[ProbeSample] | None = None


@dataclass
class _ScrapeGroup:
    scraper: Scraper
    series: dict[str, ScrapeSeries] = field(default_factory=dict)
    pending: Future[Exposition] | None = None


@dataclass
class _QueryGroup:
    source: PrometheusQuery | CloudWatchQuery
    pending: Future[float] | None = None

    def read(self) -> float:
        if isinstance(self.source, PrometheusQuery):
            return self.source.instant()
        return self.source.latest()

    def read_range(self, start: float, end: float) -> list[tuple[float, float]]:
        return self.source.range(start, end)


_SOURCES = ("probe", "scrape", "prometheus", "cloudwatch")


def _probe_key(probe: Mapping[str, Any]) -> str:
    """Canonical form of a probe block, so equal configs group regardless of key order."""
    return json.dumps(
        {
            "url": probe["url"],
            "method": str(probe.get("method") or "GET").upper(),
            "timeout": float(probe.get("timeout") or 2.0),
            "requests": int(probe.get("requests") or 5),
            "expect_status": sorted(int(s) for s in probe.get("expect_status") or ()),
            "headers": dict(sorted((probe.get("headers") or {}).items())),
        },
        sort_keys=True,
    )


class MetricCollector:
    """Collects every metric of a spec, one :meth:`collect` call per tick.

    ``metrics`` are plain dicts as produced by the validated spec (``name``, and exactly
    one of ``probe`` + ``measure``, ``scrape``, ``prometheus`` or ``cloudwatch``).
    ``context`` fills ``{target}``/``{label}`` placeholders of Prometheus queries; build
    it with :func:`analysis.collectors.query_template.query_context`. Configuration
    mistakes (unknown measure, duplicate names, not exactly one source, a placeholder
    without a value, no AWS region) raise ``ValueError`` here, at construction, rather
    than every tick.
    """

    def __init__(
        self,
        metrics: Sequence[Mapping[str, Any]],
        *,
        context: Mapping[str, str] | None = None,
    ):
        self.names: list[str] = []
        self.last_errors: dict[str, str] = {}
        self.range_errors: dict[str, str] = {}
        self._context = dict(context or {})
        self._probe_groups: dict[str, _ProbeGroup] = {}
        self._scrape_groups: dict[str, _ScrapeGroup] = {}
        self._query_groups: dict[str, _QueryGroup] = {}
        self._lock = threading.Lock()
        self._closed = False
        timeouts: list[float] = []
        try:
            for entry in metrics:
                timeouts.append(self._add(entry))
        except Exception:
            self._close_sources()
            raise
        self.timeout = max(timeouts, default=0.0)
        workers = max(
            1, len(self._probe_groups) + len(self._scrape_groups) + len(self._query_groups)
        )
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scep-collect")

    def _add(self, entry: Mapping[str, Any]) -> float:
        name = entry.get("name")
        if not name:
            raise ValueError("every metric needs a name")
        if name in self.names:
            raise ValueError(f"duplicate metric name {name!r}")
        given = [key for key in _SOURCES if entry.get(key) is not None]
        if len(given) != 1:
            raise ValueError(
                f"metric {name!r}: exactly one of 'probe' or 'scrape' or 'prometheus' or "
                f"'cloudwatch' is required, got {', '.join(given) or 'none'}"
            )
        probe, scrape = entry.get("probe"), entry.get("scrape")
        if given[0] == "prometheus":
            source: PrometheusQuery | CloudWatchQuery = PrometheusQuery.from_spec(
                entry["prometheus"], self._context
            )
        elif given[0] == "cloudwatch":
            source = CloudWatchQuery.from_spec(entry["cloudwatch"])
        if given[0] in ("prometheus", "cloudwatch"):
            self.names.append(name)
            self._query_groups[name] = _QueryGroup(source)
            return source.timeout
        self.names.append(name)
        if probe is not None:
            measure = entry.get("measure")
            if measure not in MEASURES:
                raise ValueError(f"metric {name!r}: measure must be one of {MEASURES}")
            key = _probe_key(probe)
            group = self._probe_groups.get(key)
            if group is None:
                group = self._probe_groups[key] = _ProbeGroup(Probe.from_spec(probe), {})
            group.measures[name] = measure
            return group.probe.timeout
        url = scrape["url"]
        timeout = float(scrape.get("timeout") or 2.0)
        sgroup = self._scrape_groups.get(url)
        if sgroup is None:
            sgroup = self._scrape_groups[url] = _ScrapeGroup(Scraper(url, timeout=timeout))
        elif timeout > sgroup.scraper.timeout:
            # One fetch serves the whole group, so it gets the most patient timeout.
            sgroup.scraper.close()
            sgroup.scraper = Scraper(url, timeout=timeout)
        sgroup.series[name] = ScrapeSeries.from_spec(scrape)
        return timeout

    def collect(self) -> dict[str, float | None]:
        """Every metric's value for this tick (``None`` if unavailable); never raises for
        target trouble.

        :attr:`last_errors` is rebuilt on each call: it names every metric whose value is
        ``None`` with the reason, and also probe metrics whose requests partly failed
        (an ``error_rate`` of 1.0 comes with the reason the requests failed).
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("collector is closed")
            values: dict[str, float | None] = dict.fromkeys(self.names)
            errors: dict[str, str] = {}
            busy: dict[str, str] = {}
            for gkey, group in self._probe_groups.items():
                if group.pending is None:
                    group.pending = self._pool.submit(group.probe.sample)
                elif not group.pending.done():
                    busy[gkey] = "previous probe still running"
            for url, sgroup in self._scrape_groups.items():
                if sgroup.pending is None:
                    sgroup.pending = self._pool.submit(sgroup.scraper.fetch)
                elif not sgroup.pending.done():
                    busy[url] = "previous scrape of this URL still running"
            for name, qgroup in self._query_groups.items():
                if qgroup.pending is None:
                    qgroup.pending = self._pool.submit(qgroup.read)
                elif not qgroup.pending.done():
                    busy[name] = "previous query still running"
            futures = [
                g.pending
                for g in (
                    *self._probe_groups.values(),
                    *self._scrape_groups.values(),
                    *self._query_groups.values(),
                )
                if g.pending
            ]
            wait(futures, timeout=self.timeout + _GRACE)
            for gkey, group in self._probe_groups.items():
                self._read_probe(group, busy.get(gkey), values, errors)
            for url, sgroup in self._scrape_groups.items():
                self._read_scrape(sgroup, busy.get(url), values, errors)
            for name, qgroup in self._query_groups.items():
                self._read_query(name, qgroup, busy.get(name), values, errors)
            self.last_errors = errors
            return values

    def _read_probe(
        self,
        group: _ProbeGroup,
        busy: str | None,
        values: dict[str, float | None],
        errors: dict[str, str],
    ) -> None:
        fut = group.pending
        if fut is None or not fut.done():
            reason = busy or f"probe of {group.probe.url} did not finish in time"
            errors.update(dict.fromkeys(group.measures, reason))
            return
        group.pending = None
        if fut.exception() is not None:
            errors.update(dict.fromkeys(group.measures, f"probe failed: {fut.exception()!r}"))
            return
        sample = fut.result()
        problem = None
        if sample.errors:
            problem = (
                f"{sample.errors}/{sample.n} requests to {group.probe.url} failed "
                f"(last: {sample.last_error})"
            )
        for name, measure in group.measures.items():
            value = sample.measure(measure)
            values[name] = value
            if value is None:
                errors[name] = problem or f"no response from {group.probe.url}"
            elif problem:
                errors[name] = problem

    def _read_scrape(
        self,
        group: _ScrapeGroup,
        busy: str | None,
        values: dict[str, float | None],
        errors: dict[str, str],
    ) -> None:
        fut = group.pending
        url = group.scraper.url
        if fut is None or not fut.done():
            reason = busy or f"{url} did not answer within {group.scraper.timeout}s"
            errors.update(dict.fromkeys(group.series, reason))
            return
        group.pending = None
        exc = fut.exception()
        if exc is not None:
            reason = str(exc) if isinstance(exc, CollectionError) else f"scrape failed: {exc!r}"
            errors.update(dict.fromkeys(group.series, reason))
            return
        exposition = fut.result()
        for name, series in group.series.items():
            try:
                values[name] = series.observe(exposition)
            except CollectionError as err:
                errors[name] = str(err)
                continue
            if values[name] is None:
                errors[name] = "no rate yet: a counter rate needs two scrapes of the same series"

    def _read_query(
        self,
        name: str,
        group: _QueryGroup,
        busy: str | None,
        values: dict[str, float | None],
        errors: dict[str, str],
    ) -> None:
        fut = group.pending
        if fut is None or not fut.done():
            errors[name] = busy or f"{group.source!r} did not answer within {group.source.timeout}s"
            return
        group.pending = None
        exc = fut.exception()
        if exc is not None:
            errors[name] = (
                str(exc) if isinstance(exc, CollectionError) else f"query failed: {exc!r}"
            )
            return
        value = fut.result()
        if math.isnan(value):
            errors[name] = f"{group.source!r} returned NaN (no data to compute it from)"
            return
        values[name] = value

    def collect_range(self, start: float, end: float) -> dict[str, list[tuple[float, float]]]:
        """Every query-backed metric's ``(timestamp, value)`` series over ``[start, end]``
        (epoch seconds), asked after the fact — e.g. once per phase when it ends.

        Probe and scrape metrics have no history outside the ticks and are not included.
        A metric whose backend failed maps to ``[]`` with the reason in
        :attr:`range_errors`; like :meth:`collect`, this never raises for backend trouble.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("collector is closed")
        futures = {
            name: self._pool.submit(group.read_range, start, end)
            for name, group in self._query_groups.items()
        }
        out: dict[str, list[tuple[float, float]]] = {}
        errors: dict[str, str] = {}
        for name, fut in futures.items():
            try:
                out[name] = fut.result()
            except CollectionError as exc:
                out[name], errors[name] = [], str(exc)
            except Exception as exc:  # a bug must not cost the other metrics' series
                out[name], errors[name] = [], f"range query failed: {exc!r}"
        self.range_errors = errors
        return out

    def close(self) -> None:
        """Release threads and connections; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._close_sources()

    def _close_sources(self) -> None:
        for group in self._probe_groups.values():
            group.probe.close()
        for sgroup in self._scrape_groups.values():
            sgroup.scraper.close()
        for qgroup in self._query_groups.values():
            qgroup.source.close()

    def __enter__(self) -> MetricCollector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
