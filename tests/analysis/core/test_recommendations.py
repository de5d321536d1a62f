"""The advice catalogue: enough rules, every one renders with numbers, ranking is stable."""

from __future__ import annotations

import re

from analysis.core.engine import analyse_run
from analysis.core.recommendations import CATALOGUE, recommend
from tests.analysis.core.synthetic import make_run, series

FAULT_FOR_FAMILY = {
    "network": {"type": "network.latency", "params": {"proxy": "downstream", "latency_ms": 300}},
    "process": {"type": "process.kill", "params": {"process": "worker"}},
    "dns": {"type": "dns.fail", "params": {}},
    "database": {"type": "database.pg_lock_table", "params": {"table": "orders"}},
    "cloud": {"type": "cloud.ec2_stop", "params": {}},
    "code": {"type": "code.flag", "params": {}},
    "resource": {"type": "resource.cpu", "params": {}},
    "http": {"type": "http.abort", "params": {}},
}
FAULT_FOR_TYPE = {
    "network.bandwidth": {"type": "network.bandwidth", "params": {"proxy": "p", "rate_kbps": 64}},
    "network.blackhole": {"type": "network.blackhole", "params": {"proxy": "p"}},
    "network.reset_peer": {"type": "network.reset_peer", "params": {"proxy": "p"}},
    "process.kill": {"type": "process.kill", "params": {"process": "w"}},
    "network.latency": FAULT_FOR_FAMILY["network"],
}
UNIT_FOR_ROLE = {"latency": "ms", "errors": "ratio", "saturation": "%", "throughput": "rps"}
LEVELS = {
    "latency": (100.0, 450.0, 105.0),
    "errors": (0.001, 0.2, 0.001),
    "saturation": (50.0, 96.0, 50.0),
    "throughput": (500.0, 300.0, 500.0),
}


def _finding_for(advice) -> tuple[dict, dict]:
    """A finding and fault that satisfy the advice's match conditions, with rich evidence."""
    kind = advice.kinds[0]
    role = advice.roles[0] if advice.roles else "latency"
    base, during, recovery = LEVELS[role]
    evidence = {
        "phase": "during",
        "unit": UNIT_FOR_ROLE[role],
        "better": "higher" if role == "throughput" else "lower",
        "role": role,
        "component": "billing",
        "phases": {
            "baseline": {"n": 60, "median": base, "p95": base * 1.2, "p99": base * 1.3},
            "during": {"n": 60, "median": during, "p95": during * 1.5, "p99": during * 4},
            "recovery": {"n": 60, "median": recovery, "p95": recovery, "p99": recovery},
        },
        "baseline_median": base,
        "window_median": during,
        "baseline_p95": base * 1.2,
        "window_p95": during * 1.5,
        "p_value": 1e-6,
        "p_adjusted": 2e-6,
        "relative_effect": (during - base) / base,
        "tolerance": base * 0.1,
        "baseline_cv": 0.8,
        "time_to_impact_s": 3.0,
        "time_to_recover_s": 24.0,
        "degradation_area": 1234.5,
        "ceiling": 100.0,
        "ceiling_share": 0.96,
        "aggregate": "p95",
        "observed": during * 1.5,
        "effective_threshold": base * 2,
        "margin": 0.4,
    }
    if advice.fault_types:
        fault = FAULT_FOR_TYPE[advice.fault_types[0]]
    else:
        fault = FAULT_FOR_FAMILY[advice.families[0] if advice.families else "network"]
    f = {
        "metric": "checkout",
        "kind": kind,
        "severity": "high",
        "confidence": 0.9,
        "evidence": evidence,
    }
    return f, fault


def test_catalogue_has_at_least_20_distinct_rules() -> None:
    ids = [a.id for a in CATALOGUE]
    assert len(ids) >= 20
    assert len(set(ids)) == len(ids)
    assert all(a.rationale and a.title and 1 <= a.priority <= 5 for a in CATALOGUE)


def test_every_rule_renders_with_numbers_filled_in() -> None:
    for advice in CATALOGUE:
        f, fault = _finding_for(advice)
        out = recommend([f], fault=fault, interval_s=1.0, fault_duration=60.0, catalogue=[advice])
        assert [r["id"] for r in out] == [advice.id], advice.id
        text = out[0]["advice"]
        assert "{" not in text and "}" not in text, text
        assert re.search(r"\d", text), text


def test_timeout_advice_quotes_the_run() -> None:
    advice = next(a for a in CATALOGUE if a.id == "timeout-under-latency")
    f, fault = _finding_for(advice)
    text = recommend([f], fault=fault, catalogue=[advice])[0]["advice"]
    p99 = 450.0 * 4
    assert f"~{p99 * 1.5:.0f} ms" in text
    assert f"observed p99 {p99:.0f} ms under 300 ms injected latency" in text


def test_ranking_is_severity_times_confidence_times_priority_and_deterministic() -> None:
    advice = [a for a in CATALOGUE if a.id in ("retry-backoff-jitter", "check-probe")]
    spike, fault = _finding_for(advice[0])
    improved, _ = _finding_for(advice[1])
    improved["severity"] = "info"
    first = recommend([improved, spike], fault=fault, catalogue=advice)
    second = recommend([spike, improved], fault=fault, catalogue=advice)
    assert first == second
    assert [r["id"] for r in first] == ["retry-backoff-jitter", "check-probe"]
    assert first[0]["rank"] > first[1]["rank"]


def test_missing_numbers_skip_the_rule_instead_of_printing_holes() -> None:
    advice = next(a for a in CATALOGUE if a.id == "timeout-under-latency")
    f, fault = _finding_for(advice)
    del f["evidence"]["phases"]
    assert recommend([f], fault=fault, catalogue=[advice]) == []


def test_engine_recommends_a_timeout_for_a_latency_fault() -> None:
    res = analyse_run(make_run([series("api_latency", 400.0, 100.0)]))
    ids = [r["id"] for r in res.recommendations]
    assert "timeout-under-latency" in ids
    text = next(r for r in res.recommendations if r["id"] == "timeout-under-latency")["advice"]
    assert "300 ms injected latency" in text
