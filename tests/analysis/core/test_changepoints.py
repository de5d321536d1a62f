"""Known-answer tests for CUSUM, time-to-impact and time-to-recover (seeded series)."""

from __future__ import annotations

import json

import numpy as np

from analysis.core.changepoints import cusum, time_to_impact, time_to_recover

STEP = 2.0


def test_cusum_finds_a_one_sigma_shift_quickly() -> None:
    delays, starts = [], []
    for seed in range(30):
        x = np.random.default_rng(seed).normal(size=300)
        x[100:] += 1.0
        res = cusum(x, 0.0, 1.0, h=8.0, direction="up")
        assert res.alarm_index is not None and res.direction == "up"
        delays.append(res.alarm_index - 100)
        starts.append(res.start_index - 100)
    # Siegmund: ~16 points on average for k=0.5, h=8 and a 1-sigma shift.
    assert 5 <= np.median(delays) <= 25
    assert abs(np.median(starts)) <= 3


def test_cusum_stays_quiet_on_noise() -> None:
    alarms = sum(
        cusum(np.random.default_rng(s).normal(size=500), 0.0, 1.0, h=8.0).alarm_index is not None
        for s in range(50)
    )
    assert alarms <= 5  # theory: ~5 % two-sided over 500 points


def test_cusum_default_threshold_matches_its_textbook_run_length() -> None:
    # k=0.5, h=5 has an in-control ARL of ~465 two-sided: most 500-point runs alarm.
    alarms = sum(
        cusum(np.random.default_rng(s).normal(size=500), 0.0, 1.0).alarm_index is not None
        for s in range(50)
    )
    assert 20 <= alarms <= 45


def test_cusum_down_start_and_nan() -> None:
    x = np.zeros(40)
    x[20:] = -3.0
    x[25] = np.nan
    res = cusum(x, 0.0, 1.0, direction="down")
    assert res.direction == "down" and res.start_index == 20 and res.alarm_index == 22
    assert cusum(x, 0.0, 1.0, direction="up").alarm_index is None
    assert json.dumps(res.to_dict(), allow_nan=False)


def _impact_case(seed: int, delay: int, shift: float) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    base = 10.0 + rng.normal(size=60)
    ts = 1000.0 + np.arange(120) * STEP
    vs = 10.0 + rng.normal(size=120)
    vs[delay:] += shift
    return ts, vs, base


def test_time_to_impact_recovers_the_true_delay() -> None:
    for seed in range(20):
        ts, vs, base = _impact_case(seed, 15, 4.0)
        res = time_to_impact(ts, vs, base, 1000.0, "lower")
        assert res.seconds is not None
        assert abs(res.seconds - 15 * STEP) <= 2 * STEP
        assert res.detected_at is not None and res.detected_at >= res.change_at
        assert abs(res.magnitude - 4.0) < 0.6


def test_time_to_impact_bad_direction_only() -> None:
    ts, vs, base = _impact_case(1, 15, -4.0)  # a drop
    assert time_to_impact(ts, vs, base, 1000.0, "lower").seconds is None
    res = time_to_impact(ts, vs, base, 1000.0, "higher")
    assert res.seconds is not None and res.magnitude < 0


def test_time_to_impact_placebo_is_none() -> None:
    hits = sum(
        time_to_impact(*_impact_case(seed, 0, 0.0), 1000.0, "lower").seconds is not None
        for seed in range(50)
    )
    assert hits <= 3


def test_time_to_impact_constant_baseline() -> None:
    ts = np.arange(20) * STEP
    vs = np.r_[np.zeros(5), np.ones(15)]
    res = time_to_impact(ts, vs, np.zeros(30), 0.0, "lower")
    assert res.seconds == 5 * STEP and res.magnitude == 1.0


def _recovery_case(seed: int, tail_shift: float) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    base = 10.0 + rng.normal(size=60)
    ts = 2000.0 + np.arange(150) * STEP
    decay = 10.0 * np.exp(-np.arange(150) / 10.0)  # 10 sigma, tau = 10 intervals
    return ts, 10.0 + rng.normal(size=150) + decay + tail_shift, base


def test_time_to_recover_follows_an_exponential_decay() -> None:
    seconds = []
    for seed in range(30):
        res = time_to_recover(*_recovery_case(seed, 0.0), 2000.0, "lower")
        assert res.recovered and res.seconds is not None
        assert abs(res.residual_shift) < 0.5
        seconds.append(res.seconds)
    # The decay is down to 1 sigma after tau*ln(10) = 23 intervals (46 s), to 3 sigma
    # after 12 and to 0.5 sigma after 30.
    assert abs(np.median(seconds) - 46.0) <= 5 * STEP
    inside = np.mean([12 * STEP <= s <= 32 * STEP for s in seconds])
    assert inside >= 0.85


def test_time_to_recover_false_when_it_stays_shifted() -> None:
    stuck = [time_to_recover(*_recovery_case(s, 4.0), 2000.0, "lower") for s in range(30)]
    assert sum(r.recovered for r in stuck) <= 1
    assert all(r.seconds is None or r.recovered for r in stuck)
    assert np.median([r.residual_shift for r in stuck if not r.recovered]) > 3.0


def test_time_to_recover_better_direction_counts_as_back() -> None:
    ts, vs, base = _recovery_case(0, 0.0)
    res = time_to_recover(ts, 20.0 - vs, base, 2000.0, "lower")  # dips far below
    assert res.recovered and res.seconds == 0.0
    assert json.dumps(res.to_dict(), allow_nan=False)


def _back_at_baseline(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A metric back at its baseline level right after the revert (at t = 0)."""
    rng = np.random.default_rng(seed)
    base = 10.0 + rng.normal(size=200)
    ts = np.arange(40) * STEP
    return ts, 10.0 + rng.normal(size=40), base


def test_time_to_recover_ignores_one_or_two_isolated_spikes() -> None:
    for n_spikes in (1, 2):
        ts, vs, base = _back_at_baseline(n_spikes)
        vs[30 : 30 + n_spikes] = 60.0  # a 50-sigma GC pause near the end
        res = time_to_recover(ts, vs, base, 0.0, "lower")
        assert res.recovered and res.seconds is not None and res.seconds < 10 * STEP


def test_time_to_recover_false_when_spikes_keep_coming_back() -> None:
    ts, vs, base = _back_at_baseline(3)
    vs[10::4] = 60.0  # every fourth point, to the end: flapping, not recovered
    assert not time_to_recover(ts, vs, base, 0.0, "lower").recovered
    ts, vs, base = _back_at_baseline(4)
    vs[-6:] = 60.0  # a lasting episode at the end
    assert not time_to_recover(ts, vs, base, 0.0, "lower").recovered
