"""Findings on synthetic runs whose answer is known, and the multiple-testing guard."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.core.compare import CompareConfig, compare_windows
from analysis.core.engine import analyse_run
from analysis.core.findings import (
    _mann_whitney_asymptotic,
    benjamini_hochberg,
    fast_compare,
    metric_role,
)
from tests.analysis.core.synthetic import finding, kinds, make_run, series


def _recover_after(seconds: int, high: float = 300.0, low: float = 100.0):
    return lambda t: np.where(t < seconds, high, low)


def test_latency_degradation_with_recovery_reports_time_to_recover() -> None:
    m = series("api_latency", 300.0, _recover_after(8))
    res = analyse_run(make_run([m]))
    assert {"degradation", "recovered"} <= kinds(res, "api_latency")
    rec = finding(res, "api_latency", "recovered")
    assert rec.evidence["time_to_recover_s"] == pytest.approx(8, abs=2)
    degr = finding(res, "api_latency", "degradation")
    ev = degr.evidence
    assert ev["shift_ci"][0] < 200 < ev["shift_ci"][1]
    assert ev["p_adjusted"] is not None and ev["p_adjusted"] < 0.01
    assert ev["time_to_impact_s"] == pytest.approx(0, abs=2)
    assert ev["degradation_area"] > 0
    assert ev["phases"]["during"]["median"] == pytest.approx(300, abs=5)
    assert degr.severity == "critical" and degr.confidence > 0.8
    assert res.verdict == "passed"


def test_recovery_that_takes_most_of_the_window_is_slow_not_missing() -> None:
    m = series("api_latency", 300.0, _recover_after(25), n=(40, 40, 45))
    res = analyse_run(make_run([m], n=(40, 40, 45)))
    assert "slow_recovery" in kinds(res, "api_latency")
    assert "no_recovery" not in kinds(res, "api_latency")
    slow = finding(res, "api_latency", "slow_recovery")
    assert slow.evidence["time_to_recover_s"] == pytest.approx(25, abs=3)
    assert res.metrics["api_latency"]["recovered"] is True


def test_no_recovery() -> None:
    res = analyse_run(make_run([series("api_latency", 250.0, 250.0)]))
    assert "no_recovery" in kinds(res, "api_latency")
    assert res.metrics["api_latency"]["recovered"] is False
    assert res.verdict == "failed"


def test_error_spike_from_zero_errors() -> None:
    m = series("error_rate", 0.2, 0.0, base=0.0, sd=0.005, unit="ratio")
    res = analyse_run(make_run([m]))
    spike = finding(res, "error_rate", "error_spike")
    assert spike.severity in ("high", "critical")
    assert spike.evidence["role"] == "errors"


def test_placebo_is_no_impact_everywhere() -> None:
    ms = [series(f"m{i}_latency", 100.0, 100.0, seed=i) for i in range(5)]
    res = analyse_run(make_run(ms))
    assert {f.kind for f in res.findings} == {"no_impact"}
    assert res.verdict == "passed"
    assert res.score["value"] >= 95


def test_untargeted_metric_change_is_collateral_impact() -> None:
    target = series("api_latency", 100.0, 100.0)
    other = series("billing_latency", 180.0, 100.0, seed=1, component="billing", targeted=False)
    res = analyse_run(make_run([target, other]))
    coll = finding(res, "billing_latency", "collateral_impact")
    assert coll.evidence["component"] == "billing"
    assert coll.evidence["targeted"] is False
    assert "billing" in coll.title
    assert kinds(res, "api_latency") == {"no_impact"}


def test_role_collateral_flag_is_enough() -> None:
    other = series("queue_latency", 180.0, 100.0, role="collateral")
    res = analyse_run(make_run([other]))
    assert "collateral_impact" in kinds(res, "queue_latency")


def test_cpu_at_its_ceiling_is_saturation() -> None:
    m = series("cpu_usage", 97.0, 50.0, base=50.0, sd=1.0, unit="%")
    res = analyse_run(make_run([m]))
    sat = finding(res, "cpu_usage", "saturation")
    assert sat.evidence["ceiling"] == 100.0
    assert sat.evidence["ceiling_share"] > 0.9


def test_improvement_is_flagged_as_unexpected() -> None:
    m = series("throughput", 800.0, 500.0, base=500.0, sd=10, better="higher", unit="rps")
    res = analyse_run(make_run([m]))
    assert "unexpected_improvement" in kinds(res, "throughput")


def test_roles_from_names_and_units() -> None:
    def role(name: str, unit: str = "", better: str = "lower") -> str:
        return metric_role(series(name, 1.0, 1.0, unit=unit, better=better))

    assert role("http_5xx_ratio") == "errors"
    assert role("checkout_p99", "ms") == "latency"
    assert role("db_pool_in_use") == "saturation"
    assert role("orders", "rps", better="higher") == "throughput"


def test_benjamini_hochberg_known_values() -> None:
    adj = benjamini_hochberg([0.01, 0.04, 0.03, 0.005, np.nan])
    np.testing.assert_allclose(adj[:4], [0.02, 0.04, 0.04, 0.02])
    assert np.isnan(adj[4])


def test_bh_keeps_family_wise_false_findings_near_alpha_over_20_null_metrics() -> None:
    """Under the global null, BH's FDR is the chance of any false finding at all."""
    rng = np.random.default_rng(7)
    alpha, runs, metrics = 0.01, 400, 20
    raw_hits = bh_hits = 0
    for _ in range(runs):
        p = np.array(
            [
                _mann_whitney_asymptotic(rng.normal(0, 1, 40), rng.normal(0, 1, 40))
                for _ in range(metrics)
            ]
        )
        raw_hits += bool((p < alpha).any())
        bh_hits += bool((benjamini_hochberg(p) < alpha).any())
    assert raw_hits / runs > 0.08  # ~1 - 0.99**20 = 18 % without correction
    assert bh_hits / runs <= 0.03


def test_engine_with_20_null_metrics_reports_no_change() -> None:
    ms = [series(f"svc{i}_latency", 100.0, 100.0, seed=100 + i) for i in range(20)]
    res = analyse_run(make_run(ms))
    changes = [f for f in res.findings if f.kind not in ("no_impact",)]
    assert changes == []


def test_fast_compare_matches_compare_windows_on_long_windows() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(100, 10, 400), np.round(rng.normal(103, 10, 500))
    cfg = CompareConfig()
    slow, fast = compare_windows(a, b, "lower", cfg), fast_compare(a, b, "lower", cfg)
    assert fast.p_value == pytest.approx(slow.p_value, rel=1e-6)
    assert fast.outcome == slow.outcome
    assert fast.shift.shift == pytest.approx(slow.shift.shift, abs=0.5)


def test_a_shift_beyond_tolerance_the_test_cannot_confirm_is_unconfirmed_not_no_impact() -> None:
    # +25 ms on a 100 ms baseline with sd 20: real, but 12 samples a phase cannot show it.
    short = (12, 12, 12)
    res = analyse_run(make_run([series("api_latency", 125.0, 100.0, sd=20.0, n=short)], n=short))
    assert kinds(res, "api_latency") == {"unconfirmed_change"}
    unclear = finding(res, "api_latency", "unconfirmed_change")
    assert unclear.evidence["direction"] == "worse"
    assert unclear.evidence["p_adjusted"] >= 0.01  # the default alpha: not significant
    assert unclear.severity == "low" and "not significantly" in unclear.title
    assert res.verdict == "passed" and "api_latency moved the wrong way" in res.reason
    assert [r["id"] for r in res.recommendations] == ["settle-unclear-change"]

    # The same effect with five times the samples is a confirmed degradation.
    long = (60, 60, 60)
    res = analyse_run(make_run([series("api_latency", 125.0, 100.0, sd=20.0, n=long)], n=long))
    assert "degradation" in kinds(res, "api_latency")


def test_an_unconfirmed_improvement_is_informational() -> None:
    short = (12, 12, 12)
    m = series("api_latency", 80.0, 100.0, sd=20.0, n=short, seed=3)  # a draw where p > alpha
    res = analyse_run(make_run([m], n=short))
    unclear = finding(res, "api_latency", "unconfirmed_change")
    assert unclear.evidence["direction"] == "better" and unclear.severity == "info"
    assert "moved the wrong way" not in res.reason
