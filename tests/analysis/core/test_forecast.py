"""Known-answer tests for the baseline-fitted forecast detector (seeded synthetic series)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analysis.core.forecast import detect_forecast, detect_period

STEP = 5.0


def _series(
    seed: int, n_base: int, n_eval: int, *, period: int | None = None, amp: float = 4.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Baseline and evaluation of one N(0, 1) series around 50, optionally sinusoidal."""
    rng = np.random.default_rng(seed)
    n = n_base + n_eval
    ts = 1_700_000_000.0 + np.arange(n) * STEP
    vs = 50.0 + rng.normal(size=n)
    if period:
        vs += amp * np.sin(2 * np.pi * np.arange(n) / period)
    return ts[:n_base], vs[:n_base], ts[n_base:], vs[n_base:]


def test_level_shift_gives_one_segment_starting_at_the_shift() -> None:
    bts, bvs, ets, evs = _series(7, 300, 400)
    evs = evs.copy()
    evs[150:] += 6.0
    res = detect_forecast(bts, bvs, ets, evs)
    assert not res.insufficient and res.model == "ses" and res.seasonal_period is None
    assert len(res.segments) == 1
    seg = res.segments[0]
    assert seg.direction == "above"
    assert abs(seg.start_ts - ets[150]) <= STEP
    assert seg.end_ts == pytest.approx(ets[-1], abs=STEP)
    assert seg.peak_deviation > 6.0 and seg.area > 0
    assert res.anomalous[:140].sum() <= 2  # a lone blip may pass the per-point band


def test_level_drop_is_below() -> None:
    bts, bvs, ets, evs = _series(8, 300, 200)
    evs = evs - np.where(np.arange(evs.size) >= 50, 6.0, 0.0)
    segs = detect_forecast(bts, bvs, ets, evs).segments
    assert [s.direction for s in segs] == ["below"]
    assert abs(segs[0].start_ts - ets[50]) <= STEP


def test_false_segments_on_unchanged_continuation_are_rare() -> None:
    hits = sum(bool(detect_forecast(*_series(seed, 300, 700)).segments) for seed in range(50))
    # alpha = 0.01 is the per-window false-segment rate: ~0.5 of 50 expected.
    assert hits <= 3


def test_seasonality_is_detected_with_the_right_period() -> None:
    periods = [
        detect_forecast(*_series(seed, 100, 100, period=20)).seasonal_period for seed in range(10)
    ]
    assert all(p is not None and abs(p - 20) <= 1 for p in periods)
    assert detect_period(np.random.default_rng(0).normal(size=300)) is None


def test_no_false_segments_on_seasonal_continuation() -> None:
    hits = 0
    for seed in range(50):
        res = detect_forecast(*_series(seed, 100, 200, period=20))
        assert res.model == "stl+ses"
        hits += bool(res.segments)
    assert hits <= 3


def test_bump_on_top_of_the_season_is_found() -> None:
    bts, bvs, ets, evs = _series(3, 100, 200, period=20)
    evs = evs.copy()
    evs[60:70] += 5.0  # inside the season's own range (amp 4), but not at this phase
    res = detect_forecast(bts, bvs, ets, evs)
    assert len(res.segments) == 1
    assert abs(res.segments[0].start_ts - ets[60]) <= STEP
    assert res.segments[0].direction == "above"


def test_constant_baseline_does_not_divide_by_zero() -> None:
    ts = np.arange(60) * STEP
    with np.errstate(all="raise"):
        same = detect_forecast(ts[:30], np.full(30, 3.0), ts[30:], np.full(30, 3.0))
        moved = detect_forecast(
            ts[:30], np.full(30, 3.0), ts[30:], np.r_[np.full(10, 3.0), np.full(20, 4.0)]
        )
    assert same.residual_sigma > 0 and not same.segments and not same.anomalous.any()
    assert len(moved.segments) == 1 and moved.segments[0].start_ts == ts[40]
    assert np.isfinite(moved.segments[0].peak_deviation)


def test_short_baseline_falls_back_to_robust_constant() -> None:
    bts, bvs, ets, evs = _series(1, 8, 20)
    res = detect_forecast(bts, bvs, ets, evs)
    assert res.model == "robust_constant" and "8 points" in res.reason
    tiny = detect_forecast(bts[:2], bvs[:2], ets, evs)
    assert tiny.insufficient and not tiny.anomalous.any()


def test_nan_is_dropped_and_output_stays_aligned() -> None:
    bts, bvs, ets, evs = _series(2, 200, 100)
    bvs, evs = bvs.copy(), evs.copy()
    bvs[::7] = np.nan
    evs[[3, 50]] = np.nan
    evs[60:] += 8.0
    res = detect_forecast(bts, bvs, ets, evs)
    assert res.predicted.shape == evs.shape and res.anomalous.shape == evs.shape
    assert not res.anomalous[[3, 50]].any()
    assert len(res.segments) == 1 and res.segments[0].start_ts == ets[60]


def test_band_widens_with_horizon_but_is_capped() -> None:
    # A random walk gets a large smoothing weight, so its band must widen, within the cap.
    rng = np.random.default_rng(5)
    vs = np.cumsum(rng.normal(size=1000))
    ts = np.arange(1000) * STEP
    res = detect_forecast(ts[:300], vs[:300], ts[300:], vs[300:])
    width = res.upper - res.lower
    assert width[-1] > width[0]
    assert width.max() <= 3.0 * width[0] * 1.001


def test_single_blip_is_flagged_but_not_a_segment() -> None:
    bts, bvs, ets, evs = _series(4, 300, 300)
    evs = evs.copy()
    evs[100] += 10.0
    res = detect_forecast(bts, bvs, ets, evs)
    assert res.anomalous[100] and not res.segments
    assert len(detect_forecast(bts, bvs, ets, evs, min_length=1).segments) == 1


def test_to_dict_is_plain_json() -> None:
    bts, bvs, ets, evs = _series(6, 50, 20)
    evs = evs.copy()
    evs[5:] += 10
    ets = ets.copy()
    ets[0] = np.nan
    out = detect_forecast(bts, bvs, ets, evs).to_dict()
    text = json.dumps(out, allow_nan=False)
    assert out["predicted"][0] is None and "segments" in json.loads(text)
