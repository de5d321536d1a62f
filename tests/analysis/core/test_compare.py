"""Known-answer tests for window comparison and its classification."""

from __future__ import annotations

import numpy as np

from analysis.core.compare import CompareConfig, compare_windows
from analysis.core.stats import mann_whitney


def test_clear_latency_increase_is_degraded_with_shift_ci_on_truth() -> None:
    rng = np.random.default_rng(42)
    c = compare_windows(rng.normal(100, 5, 40), rng.normal(130, 5, 40), better="lower")
    assert c.outcome == "degraded"
    assert c.shift is not None and c.shift.contains(30.0)
    assert c.p_value is not None and c.p_value < 1e-6
    assert 0.25 < (c.relative_effect or 0) < 0.35


def test_identical_distributions_rarely_flag() -> None:
    flagged = significant = 0
    seeds = 200
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        a, b = rng.normal(100, 5, 30), rng.normal(100, 5, 30)
        flagged += compare_windows(a, b).outcome != "ok"
        significant += mann_whitney(a, b).p_value < 0.01
    # The test alone is calibrated near alpha; the tolerance only removes alarms.
    assert significant / seeds <= 0.03
    assert flagged / seeds <= 0.03


def test_higher_is_better_makes_a_drop_a_degradation() -> None:
    rng = np.random.default_rng(5)
    base, drop = rng.normal(500, 20, 30), rng.normal(300, 20, 30)
    assert compare_windows(base, drop, better="higher").outcome == "degraded"
    assert compare_windows(base, drop, better="lower").outcome == "improved"


def test_nans_are_ignored() -> None:
    rng = np.random.default_rng(9)
    a = rng.normal(100, 5, 30)
    b = rng.normal(130, 5, 30)
    a_holes = np.concatenate([a, [np.nan, np.inf]])
    b_holes = np.concatenate([[np.nan], b, [np.nan]])
    clean, holey = compare_windows(a, b), compare_windows(a_holes, b_holes)
    assert holey.outcome == clean.outcome == "degraded"
    assert holey.shift == clean.shift
    assert holey.baseline.n == 30 and holey.window.n == 30


def test_significant_but_small_change_stays_ok() -> None:
    # A 3 % shift with very little noise is statistically real but below the 10 % tolerance.
    rng = np.random.default_rng(11)
    c = compare_windows(rng.normal(100, 0.5, 60), rng.normal(103, 0.5, 60))
    assert c.significant and not c.material
    assert c.outcome == "ok"


def test_noise_floor_stops_flapping_near_zero() -> None:
    # Median ~0.2 with noise sd 1: 10 % of the median is tiny, the MAD floor is not.
    rng = np.random.default_rng(2)
    c = compare_windows(rng.normal(0.2, 1, 200), rng.normal(0.6, 1, 200))
    assert c.tolerance is not None and c.tolerance > 0.5
    assert c.outcome == "ok"


def test_zero_baseline_has_no_relative_effect_but_still_degrades() -> None:
    rng = np.random.default_rng(4)
    c = compare_windows(np.zeros(20), rng.uniform(0.2, 0.4, 20), better="lower")
    assert c.relative_effect is None
    assert c.outcome == "degraded"


def test_fewer_than_five_points_is_insufficient() -> None:
    c = compare_windows([1, 2, 3, 4], [10, 11, 12, 13, 14, 15])
    assert c.outcome == "insufficient"
    assert c.p_value is None and c.shift is None
    assert c.to_dict()["outcome"] == "insufficient"


def test_config_controls_alpha_and_tolerance() -> None:
    a = np.arange(12.0) + 100  # 100..111
    b = a + 4  # p ~ 0.022, shift 4, default tolerance ~10.5
    assert compare_windows(a, b).outcome == "ok"
    assert compare_windows(a, b, config=CompareConfig(alpha=0.1)).outcome == "ok"  # too small
    no_tol = CompareConfig(alpha=0.1, rel_tolerance=0.0, noise_floor_sigmas=0.0)
    c = compare_windows(a, b, config=no_tol)
    assert c.outcome == "degraded" and c.shift is not None and c.shift.shift == 4.0


def test_to_dict_is_plain() -> None:
    import json

    rng = np.random.default_rng(0)
    d = compare_windows(rng.normal(1, 0.1, 10), rng.normal(2, 0.1, 10)).to_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d
