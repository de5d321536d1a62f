"""The run's metric sampler: one thread ticking at the spec's interval.

Samples are tagged with the phase current at the tick and flushed to the database in
chunks every few seconds, so a crash of the worker loses at most one chunk of what was
collected. The orchestrator reads the in-memory buffers to evaluate stop conditions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from typing import Any

from django.db import InterfaceError, OperationalError, close_old_connections, connection

from analysis.models import MetricSeries

__all__ = ["RunSampler"]

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 5.0


class RunSampler:
    """Collects every metric of a spec once per interval in a background thread."""

    def __init__(
        self,
        run_id: int,
        metrics: list[dict[str, Any]],
        interval: float,
        context: dict[str, str] | None = None,
    ):
        from analysis.collectors.collector import MetricCollector

        self.run_id = run_id
        self.interval = interval
        self.metric_names = [m["name"] for m in metrics]
        # context: the target's name and labels, substituted into query templates
        self._collector = MetricCollector(metrics, context=context)
        self._lock = threading.Lock()
        self._phase: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"sampler-{run_id}", daemon=True)
        # Everything collected, for live checks: phase -> metric -> (timestamps, values)
        self.samples: dict[str, dict[str, tuple[list[float], list[float]]]] = defaultdict(
            lambda: {name: ([], []) for name in self.metric_names}
        )
        self._unflushed: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
        self._seq: dict[tuple[str, str], int] = defaultdict(int)
        self.errors: dict[str, str] = {}
        self.ticks = 0

    # -- control ----------------------------------------------------------------------
    def start(self, phase: str) -> None:
        self._phase = phase
        self._thread.start()

    def set_phase(self, phase: str) -> None:
        with self._lock:
            self._phase = phase
        self.flush()

    def stop(self, phases: dict[str, tuple[float, float]] | None = None) -> dict[str, str]:
        """Stop sampling. With ``phases`` (phase -> (start, end) epoch seconds), metrics
        read from a time-series backend (Prometheus, CloudWatch) are re-read as one range
        query per phase, at the backend's own resolution, replacing the per-tick samples
        taken for live checks; returns the range errors (those metrics keep their ticks)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval + 10)
        self.flush()
        errors: dict[str, str] = {}
        try:
            if phases:
                errors = self._replace_with_ranges(phases)
        finally:
            self._collector.close()
        return errors

    def _replace_with_ranges(self, phases: dict[str, tuple[float, float]]) -> dict[str, str]:
        per_phase = {
            phase: self._collector.collect_range(start, end)
            for phase, (start, end) in phases.items()
            if end > start
        }
        errors = dict(getattr(self._collector, "range_errors", {}) or {})
        names = {name for series in per_phase.values() for name in series}
        close_old_connections()
        for name in sorted(names):
            if not all(series.get(name) for series in per_phase.values()):
                continue  # a phase without range data: keep the ticks, all of them
            MetricSeries.objects.filter(run_id=self.run_id, metric=name).delete()
            MetricSeries.objects.bulk_create(
                MetricSeries(
                    run_id=self.run_id,
                    metric=name,
                    phase=phase,
                    seq=0,
                    timestamps=[t for t, _ in series[name]],
                    values=[v for _, v in series[name]],
                    labels={"source": "range query"},
                )
                for phase, series in per_phase.items()
            )
        return errors

    def window(self, phase: str, metric: str) -> tuple[list[float], list[float]]:
        with self._lock:
            ts, vs = self.samples[phase][metric]
            return list(ts), list(vs)

    # -- the loop ---------------------------------------------------------------------
    def _loop(self) -> None:
        next_tick = time.monotonic()
        last_flush = time.monotonic()
        try:
            while not self._stop.is_set():
                started = time.time()
                values = self._collector.collect()
                self.errors = dict(getattr(self._collector, "last_errors", {}) or {})
                with self._lock:
                    phase = self._phase
                    self.ticks += 1
                    for name in self.metric_names:
                        value = values.get(name)
                        if value is None or value != value:
                            continue
                        for store in (
                            self.samples[phase][name],
                            self._unflushed.setdefault((phase, name), ([], [])),
                        ):
                            store[0].append(started)
                            store[1].append(float(value))
                if time.monotonic() - last_flush >= FLUSH_EVERY_S:
                    try:
                        self.flush()
                        last_flush = time.monotonic()
                    except (OperationalError, InterfaceError) as exc:
                        # The database is away (restarting): the samples stay buffered
                        # and go out with a later flush; a new connection is opened then.
                        log.warning("run %s: samples kept for later: %s", self.run_id, exc)
                        connection.close()
                next_tick += self.interval
                delay = next_tick - time.monotonic()
                if delay < 0:  # a slow tick: skip ahead rather than burst
                    next_tick = time.monotonic()
                    delay = 0
                self._stop.wait(delay)
        except Exception:
            log.exception("sampler of run %s stopped", self.run_id)
        finally:
            connection.close()

    def flush(self) -> None:
        """Write buffered samples as new chunk rows (safe from any thread)."""
        with self._lock:
            pending, self._unflushed = self._unflushed, {}
        if not pending:
            return
        close_old_connections()
        rows = []
        for (phase, metric), (ts, vs) in pending.items():
            if not ts:
                continue
            rows.append(
                MetricSeries(
                    run_id=self.run_id,
                    metric=metric,
                    phase=phase,
                    seq=self._seq[(phase, metric)],
                    timestamps=ts,
                    values=vs,
                )
            )
        try:
            MetricSeries.objects.bulk_create(rows)
        except Exception:
            with self._lock:  # put them back in front of whatever came in meanwhile
                for (phase, metric), (ts, vs) in pending.items():
                    later = self._unflushed.get((phase, metric), ([], []))
                    self._unflushed[(phase, metric)] = (ts + later[0], vs + later[1])
            raise
        for row in rows:
            self._seq[(row.phase, row.metric)] += 1
