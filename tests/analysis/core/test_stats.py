"""Known-answer tests for the rank statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.core.stats import MAD_TO_SIGMA, clean, hodges_lehmann, mann_whitney, summarize


def test_clean_drops_nan_and_inf() -> None:
    assert clean([1.0, float("nan"), 2.0, float("inf"), -float("inf"), 3.0]).tolist() == [
        1.0,
        2.0,
        3.0,
    ]
    assert clean(None).size == 0


def test_summary_on_hand_computed_values() -> None:
    s = summarize([1, 2, 3, 4, 100, float("nan")])
    assert s.n == 5
    assert s.mean == pytest.approx(22.0)
    assert s.p50 == 3.0
    assert s.min == 1.0 and s.max == 100.0
    # |x - 3| = 2, 1, 0, 1, 97 -> median 1: the outlier does not inflate the MAD.
    assert s.mad == 1.0
    assert s.robust_sigma == pytest.approx(MAD_TO_SIGMA)
    assert s.std == pytest.approx(float(np.std([1, 2, 3, 4, 100], ddof=1)))


def test_empty_summary_serialises_without_nan() -> None:
    d = summarize([]).to_dict()
    assert d["n"] == 0
    assert all(v is None for k, v in d.items() if k != "n")


def test_mann_whitney_directions() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(100, 5, 30), rng.normal(110, 5, 30)
    assert mann_whitney(a, b).p_value < 1e-6
    assert mann_whitney(a, b, "greater").p_value < 1e-6  # b tends to be larger
    assert mann_whitney(a, b, "less").p_value > 0.99


def test_mann_whitney_degenerate_inputs_give_no_evidence() -> None:
    assert mann_whitney([5.0] * 10, [5.0] * 10).p_value == 1.0
    assert mann_whitney([], [1.0, 2.0]).p_value == 1.0


def test_hodges_lehmann_recovers_known_shift() -> None:
    rng = np.random.default_rng(7)
    est = hodges_lehmann(rng.normal(100, 5, 50), rng.normal(130, 5, 50))
    assert est.contains(30.0)
    assert est.low < est.shift < est.high
    assert abs(est.shift - 30.0) < 3.0


def test_hodges_lehmann_exact_small_case() -> None:
    # The differences b - a are 9, 10 and 11, three times each: the median is 10.
    est = hodges_lehmann([1, 2, 3], [12, 12, 12])
    assert est.shift == 10.0


def test_hodges_lehmann_ci_coverage_near_nominal() -> None:
    hits, trials = 0, 300
    for seed in range(trials):
        rng = np.random.default_rng(1000 + seed)
        a, b = rng.normal(0, 1, 20), rng.normal(0.5, 1, 25)
        hits += hodges_lehmann(a, b, confidence=0.95).contains(0.5)
    assert 0.90 <= hits / trials <= 0.99


def test_hodges_lehmann_caps_pairs_deterministically() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, 4000), rng.normal(1, 1, 3000)
    first = hodges_lehmann(a, b, max_pairs=40_000)
    again = hodges_lehmann(a, b, max_pairs=40_000)
    assert first == again
    assert first.n_a * first.n_b <= 40_000
    assert first.contains(1.0)
    # A short window is kept whole; only the long one is thinned.
    short = hodges_lehmann(a[:8], b, max_pairs=8_000)
    assert (short.n_a, short.n_b) == (8, 1000)


def test_hodges_lehmann_empty_is_nan() -> None:
    assert math.isnan(hodges_lehmann([], [1.0]).shift)
