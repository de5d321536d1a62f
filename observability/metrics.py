"""SCEP's state gauges, computed from the database at scrape time.

Why a collector and not ``Gauge.set()`` calls: run and fault state is changed by many
processes (web, workers, agents, the reaper), so no single process's memory knows it,
while the database always does. Reading it on each scrape makes every web process answer
the same, right numbers, with no multiprocess bookkeeping. The queries are a handful of
indexed ``COUNT``/``GROUP BY`` statements, cheap at a 15-30 s scrape interval.

The collector is *not* registered in the global registry: only the web ``/metrics``
(``observability.views.metrics``) adds it, so worker/agent metric servers, which share
the global registry, do not repeat the same gauges under another ``instance`` label.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["ScepCollector", "WebRegistry", "web_registry"]

log = logging.getLogger(__name__)


class ScepCollector(Collector):
    """Run, fault, agent and queue gauges read from the database."""

    def collect(self) -> Iterator[Metric]:
        try:
            families = list(self._families())
        except Exception:  # a scrape must still answer (with the process metrics) when
            log.exception("metrics: reading SCEP state from the database failed")
            families = []
            up = 0.0
        else:
            up = 1.0
        yield from families
        yield GaugeMetricFamily(
            "scep_metrics_db_up",
            "1 when the SCEP state gauges of this scrape could be read from the database.",
            value=up,
        )

    def _families(self) -> Iterable[Metric]:
        # Imported here: this module is imported by URL loading, before models must exist.
        from experiments.choices import RunStatus
        from experiments.models import Run
        from injectors.models import ActiveFault, Agent, FaultState

        now = timezone.now()

        runs = GaugeMetricFamily("scep_runs", "Runs in the database by status.", labels=["status"])
        by_status = dict(Run.objects.values_list("status").annotate(n=Count("id")))
        # Every status is exported, zeros included, so series do not vanish and reappear.
        for status in RunStatus.values:
            runs.add_metric([status], float(by_status.get(status, 0)))
        yield runs

        open_faults = ActiveFault.objects.filter(state__in=FaultState.open())
        active = GaugeMetricFamily(
            "scep_active_faults",
            "Open ledger rows (pending or active: may be in place) by injector.",
            labels=["injector"],
        )
        for injector, n in open_faults.values_list("injector").annotate(n=Count("id")):
            active.add_metric([injector], float(n))
        yield active

        annotation = GaugeMetricFamily(
            "scep_fault_active",
            "1 per open fault: the chaos annotation dashboards overlay on target metrics.",
            labels=["experiment", "target", "fault"],
        )
        rows = open_faults.values_list("run__experiment__name", "target__name", "injector")
        series: dict[tuple[str, str, str], float] = {}
        for experiment, target, injector in rows:
            # A target holds at most one open fault (orchestrator exclusion); summing only
            # guards against a duplicate label set, which Prometheus would reject.
            key = (experiment or "", target, injector)
            series[key] = series.get(key, 0.0) + 1.0
        for key, value in sorted(series.items()):
            annotation.add_metric(list(key), value)
        yield annotation

        cutoff = now - timedelta(seconds=settings.SCEP_AGENT_OFFLINE_AFTER_S)
        yield GaugeMetricFamily(
            "scep_agents_online",
            "Agents whose last heartbeat is within SCEP_AGENT_OFFLINE_AFTER_S.",
            value=float(Agent.objects.filter(last_heartbeat__gte=cutoff).count()),
        )

        oldest = Run.objects.filter(status=RunStatus.QUEUED).aggregate(t=Min("created_at"))["t"]
        lag = max((now - oldest).total_seconds(), 0.0) if oldest else 0.0
        yield GaugeMetricFamily(
            "scep_queue_lag_seconds",
            "Age of the oldest queued run (0 when none is waiting for a worker).",
            value=lag,
        )


class WebRegistry:
    """The process's global registry plus the database collector, as one source.

    ``generate_latest`` only needs ``collect()``; composing instead of registering keeps
    the database gauges out of the global registry (see the module docstring).
    """

    def __init__(self, *sources: Any) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        for source in self._sources:
            yield from source.collect()


def web_registry(base: Any = None) -> WebRegistry:
    """What the web ``/metrics`` exposes: ``base`` (default: the global registry, which
    holds django-prometheus's and the event metrics) followed by SCEP's state gauges."""
    return WebRegistry(REGISTRY if base is None else base, ScepCollector())
