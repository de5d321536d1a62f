"""Rule aggregates and evaluation on hand-computed arrays."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.core.rules import aggregate, evaluate_rule, evaluate_window_rule

TS = [0.0, 1.0, 2.0, 3.0, 4.0]
VS = [10.0, 20.0, 30.0, 40.0, 50.0]


def rule(**kw: object) -> dict:
    base = {
        "name": "",
        "metric": "api_latency",
        "phase": "during",
        "aggregate": "p95",
        "operator": "<=",
        "threshold": 250.0,
        "relative": "absolute",
        "window": None,
    }
    base.update(kw)
    return base


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("p50", 30.0),
        ("p95", 48.0),  # linear interpolation: 40 + 0.8 * 10
        ("p99", 49.6),
        ("mean", 30.0),
        ("max", 50.0),
        ("min", 10.0),
        ("rate", 10.0),  # (50 - 10) / 4 s
    ],
)
def test_aggregates(name: str, expected: float) -> None:
    assert aggregate(name, VS, TS) == pytest.approx(expected)


def test_aggregate_edge_cases() -> None:
    assert aggregate("p95", []) is None
    assert aggregate("mean", [np.nan, 4.0, np.inf]) == 4.0
    assert aggregate("rate", [1.0]) is None  # no timestamps
    assert aggregate("rate", [1.0], [5.0]) is None  # one sample, no elapsed time
    assert aggregate("rate", [5.0, 1.0], [2.0, 0.0]) == pytest.approx(2.0)  # sorted by time
    with pytest.raises(ValueError):
        aggregate("p42", VS)


def test_absolute_rule_pass_and_fail() -> None:
    ok = evaluate_rule(rule(threshold=50.0), TS, VS)
    assert ok["passed"] is True and ok["observed"] == pytest.approx(48.0)
    bad = evaluate_rule(rule(threshold=40.0), TS, VS)
    assert bad["passed"] is False
    assert bad["effective_threshold"] == 40.0
    assert bad["margin"] == pytest.approx(0.2)
    assert "48" in bad["explanation"] and "40" in bad["explanation"]


def test_relative_to_baseline_rule() -> None:
    baseline = [10.0, 10.0, 10.0, 10.0, 20.0]  # p95 = 18
    r = rule(threshold=2.0, relative="baseline")
    res = evaluate_rule(r, TS, VS, TS, baseline)
    assert res["baseline"] == pytest.approx(18.0)
    assert res["effective_threshold"] == pytest.approx(36.0)
    assert res["passed"] is False
    res = evaluate_rule(rule(threshold=3.0, relative="baseline"), TS, VS, TS, baseline)
    assert res["passed"] is True  # 48 <= 54


def test_higher_is_required_operator() -> None:
    res = evaluate_rule(rule(aggregate="min", operator=">=", threshold=15.0), TS, VS)
    assert res["passed"] is False and res["margin"] == pytest.approx(1 / 3)


def test_no_data_is_unknown_not_failed() -> None:
    res = evaluate_rule(rule(), [], [])
    assert res["passed"] is None and res["observed"] is None
    rel = evaluate_rule(rule(relative="baseline", threshold=1.5), TS, VS, [], [])
    assert rel["passed"] is None


def test_windowed_rule_reports_worst_window() -> None:
    ts = np.arange(10.0)
    vs = np.array([1, 1, 1, 1, 9, 9, 1, 1, 1, 1], dtype=float)
    res = evaluate_rule(rule(aggregate="mean", threshold=4.0, window=2.0), ts, vs)
    assert res["observed"] == pytest.approx(9.0)
    assert res["passed"] is False
    # Whole-phase mean 2.6 would have passed.
    assert evaluate_rule(rule(aggregate="mean", threshold=4.0), ts, vs)["passed"] is True


def test_live_window_uses_only_recent_samples() -> None:
    ts = np.arange(0.0, 20.0)
    vs = np.where(ts >= 15, 500.0, 100.0)
    r = rule(aggregate="p50", threshold=300.0)
    early = evaluate_window_rule(r, ts, vs, None, now=10.0, window_s=5.0)
    assert early["passed"] is True and early["n"] == 5
    late = evaluate_window_rule(r, ts, vs, None, now=19.0, window_s=4.0)
    assert late["passed"] is False and late["observed"] == 500.0
    rel = evaluate_window_rule(
        rule(aggregate="p50", threshold=2.0, relative="baseline"),
        ts,
        vs,
        np.full(10, 100.0),
        now=19.0,
        window_s=4.0,
    )
    assert rel["effective_threshold"] == 200.0 and rel["passed"] is False
    assert evaluate_window_rule(r, ts, vs, None, now=-5.0, window_s=5.0)["passed"] is None
