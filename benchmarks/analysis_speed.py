"""Analysis speed: a full analysis of 50 metrics x 1,000 points on one core, and the
streaming detector's points per second.

Targets (issue 3): full analysis <= 1 s on one core; streaming >= 50,000 points/s. The
baseline for the ratio is the plain rank-test window comparison of the same metrics,
timed in the same process. Usage: ``.venv/bin/python benchmarks/analysis_speed.py``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from threadpoolctl import threadpool_limits

from analysis.core.compare import compare_windows
from analysis.core.engine import MetricData, RunData, analyse_run
from analysis.core.streaming import StreamingDetector

PHASES = (("baseline", 300), ("during", 400), ("recovery", 300))


def synthetic_run(n_metrics: int = 50, degraded: int = 10, seed: int = 0) -> RunData:
    """50 latency-like metrics, 10 of them shifted by 5 sigma while the fault is on."""
    rng = np.random.default_rng(seed)
    t0 = 1.7e9
    metrics = []
    for i in range(n_metrics):
        phases, start = {}, t0
        for phase, n in PHASES:
            shift = 50.0 if (i < degraded and phase == "during") else 0.0
            phases[phase] = (start + np.arange(n, dtype=float), rng.normal(100 + shift, 10, n))
            start += n
        metrics.append(MetricData(f"m{i}_latency", "lower", "ms", phases))
    return RunData(
        metrics, [], t0 + 300, t0 + 700, 1.0,
        fault={"type": "network.latency", "params": {"proxy": "p", "latency_ms": 300}},
    )  # fmt: skip


def best_of(fn, repeats: int) -> tuple[float, float]:
    """Best wall and best CPU seconds over ``repeats`` calls."""
    wall = cpu = float("inf")
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - w)
        cpu = min(cpu, time.process_time() - c)
    return wall, cpu


def main() -> int:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    run = synthetic_run()
    with threadpool_limits(1):
        analyse_run(run)  # warm imports and caches
        full_wall, full_cpu = best_of(lambda: analyse_run(run), 5)

        def rank_tests_only() -> None:
            for m in run.metrics:
                compare_windows(m.phases["baseline"][1], m.phases["during"][1], m.better)

        base_wall, _ = best_of(rank_tests_only, 5)
    result = analyse_run(run)
    degraded = sum(f.kind == "degradation" for f in result.findings)

    rng = np.random.default_rng(1)
    values = rng.normal(0, 1, 200_000)
    values[150_000:] += 4
    stamps = 1.7e9 + 300.0 * np.arange(values.size)
    detector = StreamingDetector()
    started = time.process_time()
    for ts, value in zip(stamps.tolist(), values.tolist(), strict=True):
        detector.update(ts, value)
    stream_rate = values.size / (time.process_time() - started)

    print("analysis speed (one core)")
    print(
        f"  full analysis, 50 metrics x 1,000 points : {full_wall:.3f} s wall, "
        f"{full_cpu:.3f} s CPU (target <= 1 s)"
    )
    print(
        f"  rank tests only (baseline)                : {base_wall:.3f} s wall "
        f"-> full analysis is x{full_wall / base_wall:.1f} the baseline"
    )
    print(f"  degraded metrics found                    : {degraded} of 10 shifted")
    print(
        f"  streaming detector                        : {stream_rate:,.0f} points/s CPU "
        f"(target >= 50,000)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
