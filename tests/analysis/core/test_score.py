"""Resilience score, its bootstrap interval, and the trend across runs."""

from __future__ import annotations

import numpy as np

from analysis.core.engine import analyse_run
from analysis.core.score import (
    MetricScoreInput,
    bootstrap_medians,
    metric_health,
    resilience_score,
    target_trend,
)
from tests.analysis.core.synthetic import make_run, series


def _input(n: int, seed: int, during: float = 150.0) -> MetricScoreInput:
    rng = np.random.default_rng(seed)
    return MetricScoreInput(
        "api_latency",
        "lower",
        rng.normal(100, 10, n),
        rng.normal(during, 10, n),
        rng.normal(100, 10, n),
        tolerance=10.0,
    )


TRUTH = 100 * float(metric_health(100.0, 150.0, 100.0, "lower", 10.0))


def test_bootstrap_medians_match_brute_force_resampling() -> None:
    rng = np.random.default_rng(1)
    x = rng.exponential(1.0, 101)
    fast = bootstrap_medians(x, 4000, np.random.default_rng(2))
    idx = np.random.default_rng(3).integers(0, x.size, (4000, x.size))
    slow = np.median(x[idx], axis=1)
    assert abs(fast.mean() - slow.mean()) < 0.02
    assert abs(fast.std() - slow.std()) < 0.02


def test_interval_contains_the_truth_and_shrinks_with_data() -> None:
    small = resilience_score([_input(40, 0)])
    large = resilience_score([_input(2000, 0)])
    assert large.low <= TRUTH <= large.high
    assert (large.high - large.low) < (small.high - small.low) / 3


def test_interval_coverage_is_roughly_nominal() -> None:
    hits = 0
    for seed in range(40):
        s = resilience_score([_input(100, seed)], seed=seed)
        hits += s.low <= TRUTH <= s.high
    assert hits >= 33  # nominal 95 %: 38 of 40 on average


def test_score_is_deterministic_and_bounded() -> None:
    a, b = resilience_score([_input(100, 5)]), resilience_score([_input(100, 5)])
    assert a == b
    assert 0 <= a.low <= a.value <= a.high <= 100


def test_failed_rules_cost_points() -> None:
    base = resilience_score([_input(100, 1)])
    failed = {"passed": False, "enough_data": True, "margin": 0.5}
    assert resilience_score([_input(100, 1)], [failed]).value == base.value - 20


def test_placebo_scores_high_and_damage_scores_low() -> None:
    placebo = analyse_run(make_run([series("api_latency", 100.0, 100.0)]))
    broken = analyse_run(make_run([series("api_latency", 300.0, 300.0)]))
    assert placebo.score["value"] >= 95
    assert broken.score["value"] < 40
    assert broken.score["high"] < placebo.score["low"]


def test_trend_flags_a_drop_beyond_the_noise() -> None:
    day = 86_400.0
    steady = [(i * day, 80.0 + (-1) ** i, 75.0, 85.0) for i in range(8)]
    out = target_trend(steady)
    assert out["regression"] is False
    assert out["slope_low"] <= 0 <= out["slope_high"]
    dropped = target_trend([*steady, (8 * day, 55.0, 50.0, 60.0)])
    assert dropped["regression"] is True
    assert dropped["drop"] > 20


def test_trend_slope_of_an_improving_target() -> None:
    day = 86_400.0
    rising = [(i * day, 50.0 + 3 * i, 48.0 + 3 * i, 52.0 + 3 * i) for i in range(10)]
    out = target_trend(rising)
    assert out["slope_low"] < 3 < out["slope_high"]
    assert out["direction"] == "improving"


def test_trend_needs_two_runs() -> None:
    assert target_trend([(0.0, 80.0, 70.0, 90.0)])["slope_per_day"] is None
