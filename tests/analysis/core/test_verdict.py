"""Verdict rules: when to fail, when to pass, and when to refuse to decide."""

from __future__ import annotations

import numpy as np

from analysis.core.engine import analyse_run
from tests.analysis.core.synthetic import make_run, series


def rule(threshold: float, metric: str = "api_latency", **kw: object) -> dict:
    out = {"metric": metric, "phase": "during", "aggregate": "p95", "operator": "<="}
    out.update(threshold=threshold, relative="absolute", window=None, name="", **kw)
    return out


def test_failed_rule_fails_even_with_a_noisy_baseline() -> None:
    m = series("api_latency", 400.0, 100.0, sd=60.0)
    res = analyse_run(make_run([m], [rule(250)]))
    assert res.verdict == "failed"


def test_noisy_baseline_without_a_change_is_inconclusive() -> None:
    m = series("api_latency", 100.0, 100.0, sd=80.0)
    res = analyse_run(make_run([m]))
    assert res.verdict == "inconclusive"
    assert "noisy" in res.reason


def test_narrow_pass_on_a_noisy_baseline_is_inconclusive() -> None:
    m = series("api_latency", 100.0, 100.0, sd=80.0)
    p95 = float(np.percentile(m.series("during")[1], 95))
    res = analyse_run(make_run([m], [rule(p95 * 1.05)]))
    assert res.verdict == "inconclusive"
    assert "noisy" in res.reason


def test_comfortable_pass_is_passed() -> None:
    res = analyse_run(make_run([series("api_latency", 100.0, 100.0)], [rule(500)]))
    assert res.verdict == "passed"
    assert res.confidence > 0.5


def test_detectors_disagreeing_on_recovery_is_inconclusive() -> None:
    # Every third recovery sample is still bad: the window as a whole looks fine, but
    # the recovery detector never sees three good samples in a row.
    def flapping(t: np.ndarray) -> np.ndarray:
        return np.where(t % 3 == 2, 300.0, 100.0)

    m = series("api_latency", 300.0, flapping, sd=2.0)
    res = analyse_run(make_run([m]))
    assert res.metrics["api_latency"]["time_to_recover"]["recovered"] is False
    assert res.verdict == "inconclusive"
    assert "disagree" in res.reason


def test_aborted_run_is_never_passed() -> None:
    m = series("api_latency", 100.0, 100.0)
    res = analyse_run(make_run([m], [rule(500)], aborted_reason="stop condition"))
    assert res.verdict == "inconclusive"
    assert "aborted" in res.reason


def test_too_little_data_is_inconclusive() -> None:
    m = series("api_latency", 300.0, 100.0, n=(40, 3, 40))
    res = analyse_run(make_run([m], n=(40, 3, 40)))
    assert res.verdict == "inconclusive"
    assert res.confidence == 0.0
