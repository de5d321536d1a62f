"""A run whose metrics come from a real Prometheus scraping the target: the series are
stored per phase and the analysis finds the latency the fault added."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.models import Finding, MetricSeries
from experiments.choices import RunStatus
from experiments.services.catalog import create_experiment
from experiments.services.runs import start_run
from tests.experiments.test_orchestrator import wait_status
from tests.support.prometheus import prometheus

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

P50_MS = (
    "1000 * histogram_quantile(0.5, sum by (le) "
    '(rate(demo_request_duration_seconds_bucket{job="{target}"}[3s])))'
)


def test_a_run_collects_from_prometheus_and_judges_what_it_saw(stack, start_worker):
    host = stack.api_url.split("://", 1)[1]
    with prometheus(stack.target.name, host, history_s=4) as prom_url:
        start_worker()
        # Windows long enough that the 3 s rate window smearing the first seconds of the
        # fault into "during" leaves a clear majority of shifted points, also on a slow host.
        spec = stack.spec(name="prometheus-run", baseline=12, duration=16, recovery=4)
        spec["fault"]["params"]["latency_ms"] = 200
        spec["metrics"].append(
            {"name": "prom_p50", "better": "lower", "unit": "ms",
             "prometheus": {"url": prom_url, "query": P50_MS}}
        )  # fmt: skip
        experiment = create_experiment(spec, actor="test", source="system")
        run = wait_status(start_run(experiment, actor="test", source="system"),
                          RunStatus.terminal(), timeout=90)  # fmt: skip

    assert run.status == RunStatus.COMPLETED, run.status_reason
    phases = set(
        MetricSeries.objects.filter(run=run, metric="prom_p50").values_list("phase", flat=True)
    )
    assert phases == {"baseline", "during", "recovery"}
    # After the run, each phase was re-read as one range query at Prometheus's own
    # resolution (its 1 s scrape interval), replacing the 0.5 s ticks used live.
    rows = MetricSeries.objects.filter(run=run, metric="prom_p50")
    assert all(row.labels == {"source": "range query"} for row in rows)
    during = rows.get(phase="during").timestamps
    assert len(during) >= 6
    assert np.median(np.diff(during)) == pytest.approx(1.0, abs=0.01)
    kinds = {f.kind: f.summary for f in Finding.objects.filter(run=run, metric="prom_p50")}
    assert "degradation" in kinds, kinds
