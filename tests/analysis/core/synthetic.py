"""Synthetic runs with known answers, shared by the analysis-core tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from analysis.core.engine import MetricData, RunData

T0 = 1_700_000_000.0
PHASE_N = (40, 40, 40)


def series(
    name: str,
    during: Callable[[np.ndarray], np.ndarray] | float,
    recovery: Callable[[np.ndarray], np.ndarray] | float,
    *,
    base: float = 100.0,
    sd: float = 5.0,
    n: tuple[int, int, int] = PHASE_N,
    better: str = "lower",
    unit: str = "ms",
    seed: int = 0,
    **extra: object,
) -> MetricData:
    """Baseline around ``base``; during/recovery a level or a function of seconds-in-phase."""
    rng = np.random.default_rng(seed)
    phases = {}
    start = T0
    for phase, shape, count in zip(
        ("baseline", "during", "recovery"), (base, during, recovery), n, strict=True
    ):
        ts = start + np.arange(count, dtype=float)
        t = np.arange(count, dtype=float)
        level = shape(t) if callable(shape) else np.full(count, float(shape))
        phases[phase] = (ts, level + rng.normal(0.0, sd, count))
        start += count
    return MetricData(name=name, better=better, unit=unit, phases=phases, **extra)  # type: ignore[arg-type]


def make_run(
    metrics: list[MetricData],
    hypothesis: list[dict] | None = None,
    *,
    n: tuple[int, int, int] = PHASE_N,
    **kw: object,
) -> RunData:
    kw.setdefault(
        "fault", {"type": "network.latency", "params": {"proxy": "downstream", "latency_ms": 300}}
    )
    return RunData(
        metrics=metrics,
        hypothesis=hypothesis or [],
        injected_at=T0 + n[0],
        reverted_at=T0 + n[0] + n[1],
        interval_s=1.0,
        **kw,  # type: ignore[arg-type]
    )


def kinds(result, name: str) -> set[str]:
    return {f.kind for f in result.findings if f.metric == name}


def finding(result, name: str, kind: str):
    return next(f for f in result.findings if f.metric == name and f.kind == kind)
