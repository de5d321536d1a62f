"""Read a metric from a Prometheus *server* with a PromQL query.

Unlike :mod:`analysis.collectors.scrape`, which parses one target's exposition, this
asks a server that already scrapes the target, so a metric can aggregate many pods,
use ``rate()``/``histogram_quantile()`` and outlive the experiment (range queries).

Two uses:

* :meth:`PrometheusQuery.instant` — one value now, for the sampler's per-tick
  ``collect()``.
* :meth:`PrometheusQuery.range` — the series over a phase, after the fact, with the step
  aligned to the server's scrape interval (read from ``/api/v1/targets``, else the
  global ``scrape_interval`` of ``/api/v1/status/config``), unless the spec gives
  ``step``. A step shorter than the scrape interval repeats the same sample and would
  inflate the sample count the statistics rely on; a longer one throws data away.

**Reduction to one number.** A scalar result is used as is. A vector (instant) or
matrix (range) with several series is **summed** (per timestamp for a range): most
queries people write for experiments are rates and counts, where the sum over
instances is the meaningful total. A query that already reduces (``sum(...)``,
``avg(...)``, ``max(...)``, ``histogram_quantile(0.99, sum by (le) (...))``) returns one
series and is unaffected, so write the aggregation into the query when sum is wrong.
NaN samples (``0/0`` ratios with no traffic) are ignored when summing; a result made
only of NaN is reported as NaN and the collector turns it into "no value".

HTTP goes through ``prometheus-api-client`` with a session that ignores proxy
environment variables (these are loopback/cluster URLs) and without its automatic
retries, so one call takes about ``timeout`` at most and a tick stays on schedule.
"""

from __future__ import annotations

import ast
import json
import math
import re
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import requests
import yaml
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from analysis.collectors.errors import (
    BadQueryError,
    EmptyResultError,
    QueryBackendError,
    TargetUnreachableError,
)
from analysis.collectors.query_template import render_query

__all__ = ["PrometheusQuery", "parse_prom_duration"]

# Prometheus refuses a range query with more than 11,000 points per series.
_MAX_POINTS = 11_000
# Used when the server reports neither targets nor a global interval (Prometheus' default).
_DEFAULT_INTERVAL = 15.0
_STATUS = re.compile(r"^HTTP Status Code (\d+) \((b(['\"]).*\3)\)$", re.DOTALL)
_PROM_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_PROM_UNITS = {
    "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0,
    "y": 31536000.0,
}  # fmt: skip


def parse_prom_duration(text: str) -> float:
    """Seconds from a Prometheus duration such as ``15s``, ``1m30s`` or ``500ms``."""
    text = text.strip()
    pos, total = 0, 0.0
    for m in _PROM_DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _PROM_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return total


class PrometheusQuery:
    """One PromQL query against one server; thread-safe for concurrent ticks.

    ``query`` may still contain ``{target}``/``{label}`` placeholders; ``context`` fills
    them (see :mod:`analysis.collectors.query_template`). A placeholder without a value
    raises ``ValueError`` here, at construction, rather than at every tick.
    """

    def __init__(
        self,
        url: str,
        query: str,
        *,
        step: float | None = None,
        timeout: float = 5.0,
        context: Mapping[str, str] | None = None,
    ):
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if step is not None and step <= 0:
            raise ValueError("step must be positive")
        self.url = url.rstrip("/")
        self.template = query
        self.query = render_query(query, context or {})
        self.step = step
        self.timeout = float(timeout)
        session = requests.Session()
        session.trust_env = False
        self._session = session
        self._client = PrometheusConnect(
            url=self.url,
            session=session,
            retry=Retry(total=0, connect=0, read=0, status=0, raise_on_status=False),
            timeout=self.timeout,
        )
        self._interval: float | None = None
        self._interval_lock = threading.Lock()

    @classmethod
    def from_spec(
        cls, spec: Mapping[str, Any], context: Mapping[str, str] | None = None
    ) -> PrometheusQuery:
        """Build from a validated ``prometheus:`` mapping."""
        return cls(
            spec["url"],
            spec["query"],
            step=spec.get("step"),
            timeout=float(spec.get("timeout") or 5.0),
            context=context,
        )

    # -- queries ------------------------------------------------------------------------
    def instant(self, at: float | None = None) -> float:
        """The query's value now (or at epoch second ``at``), reduced to one number."""
        params = {} if at is None else {"time": f"{at:.3f}"}
        result = self._call(self._client.custom_query, self.query, params=params)
        if _is_scalar(result):
            return float(result[1])
        if not result:
            raise self._empty("now" if at is None else f"at {at:.3f}")
        return _sum([float(series["value"][1]) for series in result])

    def range(
        self, start: float, end: float, step: float | None = None
    ) -> list[tuple[float, float]]:
        """``(timestamp, value)`` over ``[start, end]`` (epoch seconds), summed across
        series per timestamp; NaN-only timestamps are dropped.

        The step is ``step``, else the spec's ``step``, else the scrape interval; it is
        widened if the window would exceed Prometheus' 11,000-point limit.
        """
        if end < start:
            raise ValueError("end must not be before start")
        step = step or self.step or self.scrape_interval()
        step = max(step, (end - start) / (_MAX_POINTS - 1))
        result = self._call(
            self._client.custom_query_range,
            self.query,
            start_time=datetime.fromtimestamp(start, UTC),
            end_time=datetime.fromtimestamp(end, UTC),
            step=f"{step:g}",
        )
        if _is_scalar(result) or not isinstance(result, list):
            raise BadQueryError(self.url, self.query, f"unexpected range result: {result!r}")
        by_ts: dict[float, list[float]] = {}
        for series in result:
            for ts, value in series.get("values", ()):
                by_ts.setdefault(float(ts), []).append(float(value))
        points = [(ts, _sum(vals)) for ts, vals in sorted(by_ts.items())]
        points = [(ts, v) for ts, v in points if not math.isnan(v)]
        if not points:
            raise self._empty(f"between {start:.0f} and {end:.0f}")
        return points

    def scrape_interval(self) -> float:
        """The server's scrape interval in seconds, asked once and cached.

        The largest interval among active targets (so no target's samples get repeated),
        else the config's ``global.scrape_interval``, else Prometheus' default of 15 s.
        """
        with self._interval_lock:
            if self._interval is None:
                self._interval = self._read_interval()
            return self._interval

    def _read_interval(self) -> float:
        targets = self._get_json("/api/v1/targets", {"state": "active"})
        intervals = [
            parse_prom_duration(t["scrapeInterval"])
            for t in targets.get("activeTargets", [])
            if t.get("scrapeInterval")
        ]
        if intervals:
            return max(intervals)
        config = yaml.safe_load(self._get_json("/api/v1/status/config", {}).get("yaml") or "")
        text = ((config or {}).get("global") or {}).get("scrape_interval")
        return parse_prom_duration(text) if text else _DEFAULT_INTERVAL

    # -- plumbing -----------------------------------------------------------------------
    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except PrometheusApiClientException as exc:
            raise self._rejected(str(exc)) from exc
        except requests.Timeout as exc:
            raise TargetUnreachableError(
                self.url, f"Prometheus at {self.url} did not answer within {self.timeout:g}s"
            ) from exc
        except (requests.RequestException, ValueError) as exc:
            raise TargetUnreachableError(
                self.url, f"cannot reach Prometheus at {self.url}: {type(exc).__name__}: {exc}"
            ) from exc

    def _get_json(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        def get() -> dict[str, Any]:
            resp = self._session.get(self.url + path, params=params, timeout=self.timeout)
            if resp.status_code != 200:
                raise PrometheusApiClientException(
                    f"HTTP Status Code {resp.status_code} ({resp.content!r})"
                )
            return dict(resp.json().get("data") or {})

        return self._call(get)

    def _rejected(self, raw: str) -> BadQueryError | QueryBackendError:
        """Turn the client's ``HTTP Status Code N (b'...')`` text into the server's own
        ``errorType: error``, which is what the user needs to fix the query."""
        status, detail = None, raw
        if m := _STATUS.match(raw):
            status = int(m.group(1))
            try:
                body = json.loads(ast.literal_eval(m.group(2)))
                detail = f"{body.get('errorType', 'error')}: {body.get('error', body)}"
            except (ValueError, SyntaxError, TypeError, AttributeError):
                detail = ast.literal_eval(m.group(2)).decode("utf-8", "replace")[:500]
        where = f"Prometheus at {self.url}"
        if status in (400, 422):
            return BadQueryError(
                self.url, self.query, f"{where} rejected query {self.query!r}: {detail}"
            )
        return QueryBackendError(
            self.url, self.query, f"{where} failed (HTTP {status}) on {self.query!r}: {detail}"
        )

    def _empty(self, when: str) -> EmptyResultError:
        return EmptyResultError(
            self.url,
            self.query,
            f"query {self.query!r} on {self.url} returned no series {when}: check the "
            "metric name, label matchers and that the target is scraped",
        )

    def close(self) -> None:
        """Close the HTTP session; the object must not be used afterwards."""
        self._client.close()

    def __enter__(self) -> PrometheusQuery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PrometheusQuery({self.url}, {self.query!r})"


def _is_scalar(result: Any) -> bool:
    """The client returns ``data.result`` only; a scalar/string result is ``[ts, "v"]``."""
    return isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict)


def _sum(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return math.fsum(finite) if finite else math.nan
