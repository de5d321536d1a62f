"""Known-answer tests for the streaming detector: it fires on real changes, stays quiet
before them, never looks ahead, and keeps a fixed-size state."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from analysis.core.streaming import DEFAULTS, StreamingDetector, score_series


def _noise(n: int, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, scale, n)


def test_step_change_is_scored_high_soon_after_and_low_before():
    x = 50.0 + _noise(3000)
    x[2000:] += 8.0
    s = score_series(None, x)
    # Scores are 1 - p-values: pure noise reaches ~1 - 1/(samples seen) at its extremes,
    # an 8-sigma step goes orders of magnitude further, on its first sample.
    assert s[500:2000].max() < 0.9999
    assert s[2000] > 0.99999
    assert (1 - s[2000]) < 0.01 * (1 - s[500:2000].max())


def test_spike_is_scored_high():
    x = 10.0 + _noise(3000, seed=1)
    x[2500] = 20.0
    s = score_series(None, x)
    assert s[500:2500].max() < 0.9999
    assert s[2500] > 0.99999


def test_scale_free():
    """The same shape at wildly different scales gets the same scores."""
    x = 1.0 + _noise(2000, seed=2, scale=0.1)
    x[1500] += 2.0
    a = score_series(None, x)
    b = score_series(None, x * 1e9)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_causal_future_points_never_change_past_scores():
    x = 5.0 + _noise(2000, seed=3)
    base = score_series(None, x)
    y = x.copy()
    y[1200:] = 1e6 * np.sin(np.arange(800))  # wreck the future
    changed = score_series(None, y)
    np.testing.assert_array_equal(base[:1200], changed[:1200])


def test_state_size_constant_over_100k_updates():
    det = StreamingDetector()
    x = _noise(100_000, seed=4)

    def leaves(obj: object) -> int:
        if isinstance(obj, dict):
            return sum(leaves(v) for v in obj.values())
        if isinstance(obj, list):
            return sum(leaves(v) for v in obj)
        return 1

    sizes = []
    for i, v in enumerate(x.tolist()):
        det.update(float(i), v)
        if i in (1_000, 99_999):
            sizes.append(leaves(det.to_state()))
    assert sizes[0] == sizes[1]  # same number of stored numbers after 1k and 100k samples
    st = det.to_state()
    assert len(st["_buf"]) == det.params["short"]
    assert all(len(h) == len(st["_hist"][0]) for h in st["_hist"])


def test_nan_inf_and_constant_series_do_not_crash():
    det = StreamingDetector()
    out = [det.update(float(i), v) for i, v in enumerate([math.nan, 1.0, math.inf, 1.0, -math.inf])]
    assert out[0] == 0.0 and out[2] == 0.0 and out[4] == 0.0
    s = score_series(None, np.full(5000, 3.0))
    assert s.max() == 0.0  # nothing ever changes, nothing is ever surprising
    z = score_series(None, np.zeros(5000))
    assert np.all(np.isfinite(z))
    mixed = np.where(np.arange(4000) % 7 == 0, np.nan, _noise(4000, seed=5))
    m = score_series(None, mixed)
    assert np.all(np.isfinite(m)) and np.all((m >= 0) & (m <= 1))


def test_huge_values_and_irregular_timestamps():
    rng = np.random.default_rng(6)
    ts = np.cumsum(rng.exponential(60.0, 3000))
    x = 1e12 * (1 + 0.01 * rng.normal(size=3000))
    s = score_series(ts, x)
    assert np.all(np.isfinite(s)) and s.max() <= 1.0
    # Out-of-order samples are ignored rather than corrupting the state.
    det = StreamingDetector()
    det.update(10.0, 1.0)
    assert det.update(5.0, 1e9) == 0.0


def test_state_roundtrip_continues_identically():
    x = _noise(3000, seed=7)
    a = StreamingDetector()
    for i, v in enumerate(x[:1500]):
        a.update(float(i), v)
    b = StreamingDetector.from_state(json.loads(json.dumps(a.to_state())))
    for i, v in enumerate(x[1500:], start=1500):
        assert a.update(float(i), v) == b.update(float(i), v)


def test_unknown_parameter_rejected():
    with pytest.raises(TypeError):
        StreamingDetector(nope=1)


def test_throughput_floor():
    """Generous floor so CI noise can't flake; the benchmark reports the real figure."""
    x = _noise(50_000, seed=8).tolist()
    det = StreamingDetector()
    upd = det.update
    t0 = time.perf_counter()
    for i, v in enumerate(x):
        upd(float(i), v)
    rate = len(x) / (time.perf_counter() - t0)
    assert rate > 15_000


def _square_days(n_days: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """5-minute samples of a daily square wave (6 h low, 6 h high, ...) plus noise: routine
    10-unit steps four times a day, so only the time of day tells a misplaced one apart."""
    rng = np.random.default_rng(seed)
    n = 288 * n_days
    t = 1.6e9 + 300.0 * np.arange(n)
    phase = np.arange(n) % 288
    x = np.where((phase // 72) % 2 == 0, 5.0, 15.0) + rng.normal(0.0, 0.5, n)
    return t, x


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seasonal_feature_flags_a_step_at_the_wrong_time_of_day(seed: int):
    t, x = _square_days(14, seed)
    a = 288 * 10 + 108  # the low block arrives 3 hours early on day 10: every value in range
    x[a : a + 36] = 5.0 + np.random.default_rng(100 + seed).normal(0.0, 0.5, 36)
    with_season = 1 - score_series(t, x)[a]
    without = 1 - score_series(t, x, period=0)[a]
    alarm_p = 1.0 - DEFAULTS["alarm"]
    # The time-of-day profile is what makes it news: it alarms with the profile, not without.
    assert with_season < alarm_p < without


def test_seasonal_period_from_timestamps_with_gaps_and_datetimes():
    t, x = _square_days(3, seed=3)
    keep = np.random.default_rng(4).random(t.size) > 0.2  # 20% of samples missing
    det = StreamingDetector()
    for ti, xi in zip(t[keep].tolist(), x[keep].tolist(), strict=True):
        det.update(ti, xi)
    assert det._nseason == 288  # one bin per 5-minute slot of the day
    # datetime64 input is converted to seconds, so it gets the same scores.
    as_dt = (t * 1e9).astype("datetime64[ns]")
    np.testing.assert_array_equal(score_series(t, x), score_series(as_dt, x))


def test_seasonal_state_bounded_and_roundtrips():
    t = np.arange(20_000, dtype=float)  # 1-second sampling: a day would be 86,400 bins
    det = StreamingDetector()
    for ti, xi in zip(t.tolist(), _noise(t.size, seed=9).tolist(), strict=True):
        det.update(ti, xi)
    assert len(det._prof) == det.params["season_bins"]
    t5, x5 = _square_days(6, seed=5)
    a = StreamingDetector()
    for ti, xi in zip(t5[:1000].tolist(), x5[:1000].tolist(), strict=True):
        a.update(ti, xi)
    b = StreamingDetector.from_state(json.loads(json.dumps(a.to_state())))
    for ti, xi in zip(t5[1000:].tolist(), x5[1000:].tolist(), strict=True):
        assert a.update(ti, xi) == b.update(ti, xi)
