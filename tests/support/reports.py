"""A judged run built directly in the database: an experiment's run with synthetic
series (a clear shift while the fault is active), analysed by the real engine. Used by
the web and export tests and by ``benchmarks/report_render.py``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

__all__ = ["judged_run", "metric_spec"]


def metric_spec(index: int, url: str = "http://127.0.0.1:9/api/items") -> dict[str, Any]:
    return {
        "name": f"metric_{index:02d}",
        "better": "lower",
        "unit": "ms",
        "probe": {"url": url},
        "measure": "latency_p50",
    }


def judged_run(
    experiment: Any,
    *,
    points: int = 60,
    shift: float = 40.0,
    seed: int = 7,
    analyse: bool = True,
) -> Any:
    """A completed run of ``experiment`` with ``points`` samples per metric (a third per
    phase, one per second), the ``during`` third shifted by ``shift``; analysed when asked
    (findings, verdict, score and suggestions stored)."""
    from analysis.models import MetricSeries
    from analysis.services import analyse_run
    from experiments.choices import RunStatus
    from experiments.models import Run
    from experiments.services.runs import add_event

    rng = np.random.default_rng(seed)
    start = 1_790_000_000.0
    third = points // 3
    ts = start + np.arange(points, dtype=float)
    bounds = {"baseline": (0, third), "during": (third, 2 * third), "recovery": (2 * third, points)}
    when = {k: datetime.fromtimestamp(start + v[0], tz=UTC) for k, v in bounds.items()}
    run = Run.objects.create(
        experiment=experiment,
        experiment_version=experiment.version,
        spec=experiment.spec,
        status=RunStatus.ANALYSING,
        started_at=when["baseline"],
        baseline_started_at=when["baseline"],
        injected_at=when["during"],
        reverted_at=when["recovery"],
        recovery_started_at=when["recovery"],
    )
    add_event(run, "transition", "entered baseline", phase="baseline")
    add_event(run, "fault", "fault active: network.latency", phase="during")
    add_event(run, "transition", "entered recovery", phase="recovery")
    rows = []
    for m in experiment.spec["metrics"]:
        values = 10 + rng.normal(0, 1.0, points)
        if m["better"] == "lower":
            values[third : 2 * third] += shift
        for phase, (a, b) in bounds.items():
            rows.append(
                MetricSeries(
                    run=run,
                    metric=m["name"],
                    phase=phase,
                    seq=0,
                    timestamps=ts[a:b].tolist(),
                    values=values[a:b].round(3).tolist(),
                )
            )
    MetricSeries.objects.bulk_create(rows)
    if analyse:
        result = analyse_run(run)
        Run.objects.filter(pk=run.pk).update(
            status=RunStatus.COMPLETED,
            status_reason="all phases completed",
            verdict=result.verdict,
            verdict_confidence=result.confidence,
            verdict_reason=result.reason,
            finished_at=datetime.fromtimestamp(start + points, tz=UTC),
        )
    else:
        Run.objects.filter(pk=run.pk).update(status=RunStatus.COMPLETED)
    run.refresh_from_db()
    return run
