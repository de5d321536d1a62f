"""Suggested next experiments: every one is a valid spec, and each kind is chosen right."""

from __future__ import annotations

import copy

import pytest

from analysis.core.engine import analyse_run, suggest_next
from analysis.core.suggestions import bisect_breaking_point, coverage_matrix, power_sample_size
from experiments.spec import validate_spec
from tests.analysis.core.synthetic import make_run, series
from tests.conftest import DEMO_CONFIG, VALID_SPEC

CAPS = {"max_duration": 3600, "max_intensity": 1.0, "max_window": 3600}


def _spec(**kw: object) -> dict:
    spec = copy.deepcopy(VALID_SPEC)
    spec.update(kw)
    return spec


def _valid(suggestions: list[dict]) -> None:
    assert suggestions
    for s in suggestions:
        validate_spec(s["spec"], caps=CAPS)
        validate_spec(s["spec"], caps=CAPS, target_config=DEMO_CONFIG)
        assert s["rationale"] and s["kind"]


def _result(verdict: str) -> dict:
    """An analysis result dict with just what suggestions read."""
    metrics = {
        "latency": {
            "phases": {"baseline": {"p50": 0.1, "mad": 0.01, "std": 0.015}},
            "during": {"shift": {"shift": 0.005}},
        }
    }
    return {"verdict": verdict, "metrics": metrics}


def test_bisect_picks_the_midpoint_between_highest_pass_and_lowest_fail() -> None:
    pairs = [(0.2, "passed"), (0.4, "passed"), (0.8, "failed"), (1.0, "failed"), (0.5, "x")]
    found = bisect_breaking_point(pairs)
    assert found["next"] == pytest.approx(0.6)
    assert (found["highest_pass"], found["lowest_fail"]) == (0.4, 0.8)
    assert found["monotone"] and not found["converged"]


def test_bisect_when_smaller_is_harsher() -> None:
    found = bisect_breaking_point([(256, "passed"), (64, "failed"), (16, "failed")], harsher=-1)
    assert found["next"] == pytest.approx(160)


def test_bisect_needs_both_outcomes() -> None:
    assert bisect_breaking_point([(0.2, "passed"), (0.4, "passed")]) is None


def test_breaking_point_over_latency_history() -> None:
    def past(ms: int, verdict: str) -> dict:
        params = {"proxy": "downstream", "latency_ms": ms}
        return {"fault_type": "network.latency", "params": params, "verdict": verdict}

    history = [past(100, "passed"), past(400, "failed")]
    spec = _spec()  # latency_ms 300 in the demo spec
    out = suggest_next(spec, history, _result("passed"), DEMO_CONFIG, caps=CAPS)
    _valid(out)
    bp = next(s for s in out if s["kind"] == "breaking_point")
    assert bp["spec"]["fault"]["params"]["latency_ms"] == pytest.approx(350)


def test_breaking_point_over_intensity_history() -> None:
    history = [
        {"spec": _spec(intensity=0.2), "verdict": "passed"},
        {"spec": _spec(intensity=1.0), "verdict": "failed"},
    ]
    out = suggest_next(_spec(intensity=0.4), history, _result("passed"), DEMO_CONFIG, caps=CAPS)
    _valid(out)
    bp = next(s for s in out if s["kind"] == "breaking_point")
    assert bp["spec"]["intensity"] == pytest.approx(0.7)


def test_power_sample_size_known_answer() -> None:
    # effect = one sigma: 2 (2.576 + 0.842)^2 / (3/pi) = 24.5 -> 25 points per phase
    assert power_sample_size(1.0, 1.0) == 25
    # half the effect needs four times the points
    assert power_sample_size(0.5, 1.0) == 98
    assert power_sample_size(0.0, 1.0) is None


def test_inconclusive_run_gets_a_powered_repeat() -> None:
    out = suggest_next(_spec(), [], _result("inconclusive"), DEMO_CONFIG, caps=CAPS)
    _valid(out)
    rep = next(s for s in out if s["kind"] == "repeat")
    # effect 10 % of 0.1 = 0.01, sigma 0.01482 -> ~54 points per phase at 1 s
    assert rep["points_per_phase"] == power_sample_size(0.01, 0.01 * 1.4826)
    assert rep["spec"]["duration"] >= rep["points_per_phase"]
    assert rep["spec"]["baseline"] >= rep["points_per_phase"]


def test_repeat_is_capped_by_policy() -> None:
    res = _result("inconclusive")
    res["metrics"]["latency"]["phases"]["baseline"]["mad"] = 1.0  # very noisy
    out = suggest_next(_spec(), [], res, DEMO_CONFIG, caps=CAPS)
    _valid(out)
    rep = next(s for s in out if s["kind"] == "repeat")
    assert rep["spec"]["duration"] == 3600
    assert "caps" in rep["rationale"]


def test_pass_widens_the_blast_radius() -> None:
    out = suggest_next(_spec(intensity=0.3), [], _result("passed"), DEMO_CONFIG, caps=CAPS)
    _valid(out)
    assert next(s for s in out if s["kind"] == "blast_radius")["spec"]["intensity"] == 0.6
    out = suggest_next(_spec(intensity=0.8), [], _result("passed"), DEMO_CONFIG, caps=CAPS)
    assert next(s for s in out if s["kind"] == "blast_radius")["spec"]["intensity"] == 1.0
    full = suggest_next(_spec(intensity=1.0), [], _result("passed"), DEMO_CONFIG, caps=CAPS)
    harsher = next(s for s in full if s["kind"] == "blast_radius")
    assert harsher["spec"]["fault"]["params"]["latency_ms"] == 600


def test_coverage_suggests_the_most_valuable_untested_family() -> None:
    out = suggest_next(_spec(), [], _result("failed"), DEMO_CONFIG, caps=CAPS)
    _valid(out)
    cov = next(s for s in out if s["kind"] == "coverage")
    assert cov["spec"]["fault"]["type"].startswith("process.")
    assert cov["spec"]["fault"]["params"]["process"] == "worker"


def test_coverage_explains_missing_config() -> None:
    config = {"proxies": DEMO_CONFIG["proxies"]}  # no processes
    matrix = coverage_matrix(config, ["network.latency"])
    assert matrix["network"]["tested"] is True
    assert matrix["process"]["fault"] is None
    assert any("process" in m for m in matrix["process"]["missing"])
    out = suggest_next(_spec(), [], _result("failed"), config, caps=CAPS)
    cov = [s for s in out if s["kind"] == "coverage"]
    for s in cov:
        assert not s["spec"]["fault"]["type"].startswith("process.")
        assert any(b["family"] == "process" for b in s["blocked"])
        validate_spec(s["spec"], caps=CAPS, target_config=config)


def test_pass_suggests_a_combined_follow_up() -> None:
    out = suggest_next(_spec(), [], _result("passed"), DEMO_CONFIG, caps=CAPS)
    _valid(out)
    comb = next(s for s in out if s["kind"] == "combined")
    assert comb["companion_fault"]["type"] == "network.latency"
    assert comb["spec"]["fault"]["type"] != "network.latency"
    assert "one fault" in comb["rationale"]


def test_suggestions_from_a_real_analysis_result() -> None:
    res = analyse_run(make_run([series("latency", 0.1, 0.1, base=0.1, sd=0.05, unit="s")]))
    out = suggest_next(_spec(), [], res, DEMO_CONFIG, caps=CAPS)
    _valid(out)


def test_an_unconfirmed_worse_change_asks_for_a_longer_repeat_before_a_harsher_fault() -> None:
    short = (12, 12, 12)
    m = series("api_latency", 125.0, 100.0, sd=20.0, n=short)
    result = analyse_run(make_run([m], n=short))
    assert result.verdict == "passed"

    suggestions = suggest_next(_spec(), [], result, DEMO_CONFIG, caps=CAPS)

    _valid(suggestions)
    by_kind = {s["kind"]: s for s in suggestions}
    assert "blast_radius" not in by_kind
    assert by_kind["repeat"]["rationale"].startswith("api_latency moved the wrong way")
