"""Passive collection: read what the target says about itself on a Prometheus endpoint.

The work is split in two so that several metric entries pointing at the same URL cost one
HTTP fetch per tick:

* :class:`Scraper` fetches and parses one endpoint into an :class:`Exposition`.
* :class:`ScrapeSeries` is one metric entry's view of an exposition: it picks the samples
  (family name, label subset), turns counters into per-second rates and aggregates.

Name resolution follows how people actually write names in specs. ``demo_requests`` and
``demo_requests_total`` both find the counter family ``demo_requests`` (the parser strips
``_total`` from counter family names); a sample name such as
``demo_request_duration_seconds_count`` selects just that part of a histogram. Naming a
histogram family by itself is refused, because summing buckets, sums and counts together
gives a meaningless number.

Counter rates are computed **per series, then aggregated** (as PromQL's ``sum(rate(x))``
does), so a restart of one labelled series does not distort the others. A series whose
value went down is treated as reset: its new value is the increase since the reset.
Series with no previous value (first scrape, or newly appeared) contribute nothing; when
no series has history yet the value is ``None``.
"""

from __future__ import annotations

import difflib
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from analysis.collectors.errors import (
    AmbiguousMetricError,
    ExpositionParseError,
    NoMatchingSamplesError,
    TargetHTTPError,
    TargetUnreachableError,
    UnknownMetricError,
)
from analysis.collectors.tls import client_ssl_context

__all__ = ["Exposition", "ScrapeSeries", "Scraper", "Selection"]

Aggregate = Literal["sum", "mean", "max", "min"]
CounterMode = Literal["rate", "raw"]

_AGGREGATES = ("sum", "mean", "max", "min")
# Refuse absurd bodies: an exposition of a demo or a normal service is a few hundred KB.
_MAX_BYTES = 16 * 1024 * 1024
# Ask for the classic text format; OpenMetrics or protobuf would not parse here.
_ACCEPT = "text/plain;version=0.0.4;q=1.0, */*;q=0.1"
_MONOTONIC_SUFFIXES = ("_count", "_sum", "_bucket")


@dataclass(frozen=True)
class Selection:
    """The samples picked for one metric name, and whether they only ever go up."""

    metric: str
    family: str
    type: str
    monotonic: bool
    samples: list[Sample]


@dataclass(frozen=True)
class Exposition:
    """One parsed scrape; ``fetched_at`` is ``time.monotonic()`` when the body arrived."""

    url: str
    families: dict[str, Metric]
    fetched_at: float = field(default_factory=time.monotonic)

    @classmethod
    def parse(cls, text: str, *, url: str = "", fetched_at: float | None = None) -> Exposition:
        """Parse exposition text; raises :class:`ExpositionParseError` with the URL."""
        try:
            families = {f.name: f for f in text_string_to_metric_families(text)}
        except (ValueError, TypeError, IndexError) as exc:
            raise ExpositionParseError(
                url, f"{url or 'exposition'} is not Prometheus text format: {exc}"
            ) from exc
        return cls(url, families, time.monotonic() if fetched_at is None else fetched_at)

    def select(self, metric: str, labels: Mapping[str, str] | None = None) -> Selection:
        """Samples of ``metric`` carrying every label in ``labels`` (extra labels allowed)."""
        found = self._resolve(metric)
        wanted = {str(k): str(v) for k, v in (labels or {}).items()}
        matching = [
            s for s in found.samples if all(s.labels.get(k) == v for k, v in wanted.items())
        ]
        if not matching:
            seen = sorted({_fmt_labels(s.labels) for s in found.samples})
            shown = ", ".join(seen[:8]) + (" ..." if len(seen) > 8 else "")
            raise NoMatchingSamplesError(
                metric,
                f"{metric} at {self.url or 'exposition'} has no sample with labels "
                f"{_fmt_labels(wanted)}; available: {shown or 'none'}",
            )
        return Selection(found.metric, found.family, found.type, found.monotonic, matching)

    def _resolve(self, metric: str) -> Selection:
        fam = self.families.get(metric)
        if fam is not None:
            return self._whole_family(metric, fam)
        if metric.endswith("_total"):
            fam = self.families.get(metric[: -len("_total")])
            if fam is not None and fam.type == "counter":
                return self._whole_family(metric, fam)
        for fam in self.families.values():
            picked = [s for s in fam.samples if s.name == metric]
            if picked:
                monotonic = fam.type in ("counter", "histogram", "summary") and (
                    metric.endswith(_MONOTONIC_SUFFIXES) or fam.type == "counter"
                )
                return Selection(metric, fam.name, fam.type, monotonic, picked)
        known = sorted(self.families)
        close = difflib.get_close_matches(metric, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownMetricError(
            metric,
            f"metric {metric!r} is not exposed at {self.url or 'exposition'} "
            f"({len(known)} families){hint}",
        )

    def _whole_family(self, metric: str, fam: Metric) -> Selection:
        if fam.type == "counter":
            picked = [s for s in fam.samples if s.name == fam.name + "_total"]
            return Selection(metric, fam.name, fam.type, True, picked or list(fam.samples))
        if fam.type in ("histogram", "gaugehistogram"):
            raise AmbiguousMetricError(
                metric,
                f"{metric!r} is a {fam.type}; name one of its sample series instead: "
                f"{fam.name}_count, {fam.name}_sum or {fam.name}_bucket",
            )
        # Gauges, untyped, and a summary's quantile series carry the family's own name.
        picked = [s for s in fam.samples if s.name == fam.name] or list(fam.samples)
        return Selection(metric, fam.name, fam.type, False, picked)


class Scraper:
    """Fetches one Prometheus endpoint; thread-safe, keeps its connection alive."""

    def __init__(self, url: str, *, timeout: float = 2.0):
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.url = url
        self.timeout = float(timeout)
        self._client = httpx.Client(
            timeout=httpx.Timeout(self.timeout),
            headers={"Accept": _ACCEPT},
            follow_redirects=True,
            trust_env=False,
            verify=client_ssl_context(),
        )

    def fetch(self) -> Exposition:
        """GET and parse the endpoint, within about ``timeout`` seconds in total."""
        deadline = time.perf_counter() + self.timeout
        try:
            with self._client.stream("GET", self.url) as resp:
                if resp.status_code >= 400:
                    raise TargetHTTPError(self.url, resp.status_code)
                chunks: list[bytes] = []
                size = 0
                for chunk in resp.iter_bytes():
                    size += len(chunk)
                    if size > _MAX_BYTES:
                        raise ExpositionParseError(
                            self.url, f"{self.url} returned more than {_MAX_BYTES} bytes"
                        )
                    if time.perf_counter() > deadline:
                        raise httpx.ReadTimeout("body not complete within the timeout")
                    chunks.append(chunk)
                encoding = resp.encoding or "utf-8"
        except httpx.TimeoutException as exc:
            raise TargetUnreachableError(
                self.url, f"{self.url} did not answer within {self.timeout}s"
            ) from exc
        except httpx.HTTPError as exc:
            raise TargetUnreachableError(
                self.url, f"cannot reach {self.url}: {type(exc).__name__}: {exc}"
            ) from exc
        fetched_at = time.monotonic()
        text = b"".join(chunks).decode(encoding, errors="replace")
        return Exposition.parse(text, url=self.url, fetched_at=fetched_at)

    def read(self, series: ScrapeSeries) -> float | None:
        """Convenience for a single series: fetch and observe in one call."""
        return series.observe(self.fetch())

    def close(self) -> None:
        """Close the pooled connection; the scraper must not be used afterwards."""
        self._client.close()

    def __enter__(self) -> Scraper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ScrapeSeries:
    """One metric entry's selection, aggregation, and counter-rate memory."""

    def __init__(
        self,
        metric: str,
        *,
        labels: Mapping[str, str] | None = None,
        aggregate: Aggregate = "sum",
        counter: CounterMode = "rate",
    ):
        if aggregate not in _AGGREGATES:
            raise ValueError(f"aggregate must be one of {_AGGREGATES}, got {aggregate!r}")
        if counter not in ("rate", "raw"):
            raise ValueError(f"counter must be 'rate' or 'raw', got {counter!r}")
        self.metric = metric
        self.labels = {str(k): str(v) for k, v in (labels or {}).items()}
        self.aggregate = aggregate
        self.counter = counter
        self._previous: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._previous_at: float | None = None

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> ScrapeSeries:
        """Build from a validated ``scrape:`` mapping."""
        return cls(
            spec["metric"],
            labels=spec.get("labels") or {},
            aggregate=spec.get("aggregate") or "sum",
            counter=spec.get("counter") or "rate",
        )

    def observe(self, exposition: Exposition) -> float | None:
        """This tick's value; ``None`` while a rate has no earlier scrape to compare to.

        Raises a :class:`~analysis.collectors.errors.MetricSelectionError` when the metric
        or labels are missing; the rate memory is kept, so a later good scrape still
        yields a rate over the longer interval.
        """
        selection = exposition.select(self.metric, self.labels)
        if not (selection.monotonic and self.counter == "rate"):
            return _aggregate([s.value for s in selection.samples], self.aggregate)
        current = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in selection.samples}
        previous, previous_at = self._previous, self._previous_at
        self._previous, self._previous_at = current, exposition.fetched_at
        if previous_at is None:
            return None
        dt = exposition.fetched_at - previous_at
        if dt <= 0:
            return None
        rates = []
        for key, value in current.items():
            before = previous.get(key)
            if before is None or math.isnan(value) or math.isnan(before):
                continue
            increase = value - before if value >= before else value
            rates.append(increase / dt)
        return _aggregate(rates, self.aggregate)

    def reset(self) -> None:
        """Forget the rate memory (e.g. between experiment runs)."""
        self._previous, self._previous_at = {}, None

    def __repr__(self) -> str:
        return (
            f"ScrapeSeries({self.metric}{_fmt_labels(self.labels)}, "
            f"{self.aggregate}, counter={self.counter})"
        )


def _aggregate(values: list[float], how: str) -> float | None:
    finite = [float(v) for v in values if not math.isnan(v)]
    if not finite:
        return None
    if how == "sum":
        return math.fsum(finite)
    if how == "mean":
        return math.fsum(finite) / len(finite)
    if how == "max":
        return max(finite)
    return min(finite)


def _fmt_labels(labels: Mapping[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
