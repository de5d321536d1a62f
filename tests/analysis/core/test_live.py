"""Statistical stop conditions on series whose answer is known."""

from __future__ import annotations

import numpy as np

from analysis.core.live import make_live_detector


def detector(kind: str, threshold: float, better: str = "lower", consecutive: int = 1):
    return make_live_detector(
        {"detector": kind, "threshold": threshold, "consecutive": consecutive}, better
    )


def baseline(rng, n: int = 30, mu: float = 100.0, sd: float = 5.0):
    return list(range(n)), list(rng.normal(mu, sd, n))


def first_breach(d, values, t0: int = 100) -> int | None:
    for i, v in enumerate(values):
        if d.update(t0 + i, v):
            return i
    return None


def test_cusum_catches_a_five_sigma_shift_within_two_points():
    rng = np.random.default_rng(0)
    d = detector("cusum", 5)
    assert d.prime(*baseline(rng))
    assert first_breach(d, rng.normal(125, 5, 20)) <= 1


def test_cusum_stays_quiet_on_unchanged_noise_for_most_seeds():
    alarms = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        d = detector("cusum", 8)
        d.prime(*baseline(rng, n=60))
        alarms += first_breach(d, rng.normal(100, 5, 60)) is not None
    assert alarms <= 10


def test_a_change_in_the_good_direction_is_not_a_breach():
    rng = np.random.default_rng(1)
    d = detector("cusum", 5, better="lower")
    d.prime(*baseline(rng))
    assert first_breach(d, rng.normal(50, 5, 30)) is None
    up = detector("cusum", 5, better="higher")
    up.prime(*baseline(rng))
    assert first_breach(up, rng.normal(50, 5, 30)) is not None


def test_consecutive_points_beyond_the_limit_are_required():
    rng = np.random.default_rng(2)
    ts, vs = baseline(rng)
    once, thrice = detector("cusum", 5), detector("cusum", 5, consecutive=3)
    once.prime(ts, vs)
    thrice.prime(ts, vs)
    jump = [200.0, 200.0, 200.0, 200.0]
    assert first_breach(once, jump) == 0
    assert first_breach(thrice, jump) == 2


def test_the_streaming_detector_flags_a_jump_in_the_bad_direction():
    rng = np.random.default_rng(3)
    d = detector("streaming", 0.99)
    ts, vs = baseline(rng, n=40)
    assert d.prime(ts, vs)
    evidence = None
    for i, v in enumerate([101.0, 99.0, 400.0, 410.0]):
        evidence = d.update(200 + i, v) or evidence
    assert evidence is not None and evidence["observed"] >= 400


def test_a_baseline_too_short_disables_the_detector():
    assert not detector("cusum", 5).prime([0, 1, 2], [1.0, 2.0, 3.0])


def test_missing_samples_are_ignored():
    rng = np.random.default_rng(4)
    d = detector("cusum", 5)
    d.prime(*baseline(rng))
    assert d.update(100, float("nan")) is None and d.n == 0
