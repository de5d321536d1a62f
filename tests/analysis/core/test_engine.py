"""Verdicts and findings of the analysis engine on synthetic runs with known answers."""

from __future__ import annotations

import json

import numpy as np

from analysis.core.engine import MetricData, RunData, analyse_run, severity_for_effect

T0 = 1_700_000_000.0


def metric(
    name: str,
    means: tuple[float, float, float],
    *,
    sd: float = 5.0,
    n: tuple[int, int, int] = (30, 30, 30),
    better: str = "lower",
    seed: int = 0,
) -> MetricData:
    """Three consecutive phases sampled once a second around the given means."""
    rng = np.random.default_rng(seed)
    phases = {}
    start = T0
    for phase, mu, count in zip(("baseline", "during", "recovery"), means, n, strict=True):
        ts = start + np.arange(count, dtype=float)
        phases[phase] = (ts, rng.normal(mu, sd, count))
        start += count
    return MetricData(name=name, better=better, unit="ms", phases=phases)


def run(metrics: list[MetricData], hypothesis: list[dict] | None = None, **kw: object) -> RunData:
    return RunData(
        metrics=metrics,
        hypothesis=hypothesis or [],
        injected_at=T0 + 30,
        reverted_at=T0 + 60,
        interval_s=1.0,
        **kw,
    )


def p95_rule(threshold: float, **kw: object) -> dict:
    rule = {
        "name": "latency stays bounded",
        "metric": "api_latency",
        "phase": "during",
        "aggregate": "p95",
        "operator": "<=",
        "threshold": threshold,
        "relative": "absolute",
        "window": None,
    }
    rule.update(kw)
    return rule


def kinds(result, name: str) -> set[str]:
    return {f.kind for f in result.findings if f.metric == name}


def test_violated_rule_fails_with_high_confidence() -> None:
    res = analyse_run(run([metric("api_latency", (100, 300, 100))], [p95_rule(250)]))
    assert res.verdict == "failed"
    assert res.confidence > 0.8
    assert "api_latency" in res.reason or "latency stays bounded" in res.reason
    assert res.rules[0]["passed"] is False
    assert {"degradation", "hypothesis_violated", "recovered"} <= kinds(res, "api_latency")
    degr = next(f for f in res.findings if f.kind == "degradation")
    assert degr.severity == "critical"  # +200 % effect
    assert degr.evidence["shift_ci"][0] < 200 < degr.evidence["shift_ci"][1]


def test_rule_just_past_threshold_is_less_confident() -> None:
    far = analyse_run(run([metric("api_latency", (100, 300, 100))], [p95_rule(250)]))
    near = analyse_run(run([metric("api_latency", (100, 300, 100))], [p95_rule(305)]))
    assert near.verdict == "failed"
    assert near.confidence < far.confidence


def test_everything_fine_passes() -> None:
    m = metric("api_latency", (100, 100, 100), seed=3)
    res = analyse_run(run([m], [p95_rule(250), p95_rule(1.5, relative="baseline")]))
    assert res.verdict == "passed"
    assert 0.5 < res.confidence <= 1.0
    assert all(r["passed"] for r in res.rules)
    assert kinds(res, "api_latency") == {"no_impact"}


def test_three_points_is_inconclusive() -> None:
    m = metric("api_latency", (100, 300, 100), n=(30, 3, 30))
    res = analyse_run(run([m], [p95_rule(250)]))
    assert res.verdict == "inconclusive"
    assert "3" in res.reason
    assert "insufficient_data" in kinds(res, "api_latency")


def test_no_rules_degradation_without_recovery_fails() -> None:
    res = analyse_run(run([metric("api_latency", (100, 200, 200))]))
    assert res.verdict == "failed"
    assert "no_recovery" in kinds(res, "api_latency")
    assert res.metrics["api_latency"]["recovered"] is False
    no_rec = next(f for f in res.findings if f.kind == "no_recovery")
    assert no_rec.severity in ("high", "critical")
    # Less sure than when a stated hypothesis fails.
    assert res.confidence < 0.8


def test_no_rules_recovered_degradation_passes() -> None:
    res = analyse_run(run([metric("api_latency", (100, 200, 100))]))
    assert res.verdict == "passed"
    assert {"degradation", "recovered"} <= kinds(res, "api_latency")
    assert res.confidence <= 0.6


def test_throughput_drop_is_degradation_when_higher_is_better() -> None:
    m = metric("throughput", (500, 250, 500), sd=20, better="higher")
    res = analyse_run(run([m]))
    assert "degradation" in kinds(res, "throughput")


def test_unknown_metric_in_rule_is_inconclusive() -> None:
    res = analyse_run(run([metric("api_latency", (100, 100, 100))], [p95_rule(250, metric="x")]))
    assert res.verdict == "inconclusive"
    assert res.rules[0]["passed"] is None


def test_aborted_run_never_passes() -> None:
    m = metric("api_latency", (100, 100, 100))
    res = analyse_run(run([m], [p95_rule(250)], aborted_reason="stop condition: errors > 5%"))
    assert res.verdict == "inconclusive"
    assert "aborted" in res.reason


def test_to_dict_is_plain_json() -> None:
    m = metric("api_latency", (100, 300, 100))
    m.phases["during"][1][3] = np.nan
    d = analyse_run(run([m], [p95_rule(250)])).to_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    # v1 added score, recommendations and detectors; every v0 key is still there.
    assert set(d) == {
        "verdict",
        "confidence",
        "reason",
        "metrics",
        "rules",
        "findings",
        "score",
        "recommendations",
        "detectors",
    }
    f = d["findings"][0]
    assert set(f) == {"metric", "kind", "severity", "confidence", "title", "summary", "evidence"}
    assert d["metrics"]["api_latency"]["phases"]["during"]["n"] == 29


def test_severity_scale() -> None:
    assert severity_for_effect(0.1) == "low"
    assert severity_for_effect(-0.3) == "medium"
    assert severity_for_effect(0.6) == "high"
    assert severity_for_effect(2.0) == "critical"
    assert severity_for_effect(None) == "medium"
