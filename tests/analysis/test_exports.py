"""Exports of a run's report: JUnit for CI systems, Markdown, self-contained HTML, JSON,
from the module and through ``GET /api/v1/runs/{id}/export/{fmt}/``."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest

from analysis.exports import FORMATS, UnknownFormat, export_report, to_junit, to_markdown

T0 = 1_700_000_000.0


def report(**analysis_overrides) -> dict:
    analysis = {
        "verdict": "failed",
        "confidence": 0.8,
        "reason": "API p95 latency stays under 250 ms: VIOLATED",
        "score": {"value": 42.0, "low": 30.0, "high": 50.0},
        "rules": [
            {
                "name": "p95 under 250 ms",
                "metric": "latency",
                "aggregate": "p95",
                "phase": "during",
                "operator": "<=",
                "threshold": 250,
                "observed": 320.0,
                "effective_threshold": 250,
                "passed": False,
                "explanation": "320 > 250",
            },
            {
                "name": "errors under 1 %",
                "metric": "errors",
                "aggregate": "mean",
                "phase": "during",
                "operator": "<=",
                "threshold": 0.01,
                "observed": 0.0,
                "effective_threshold": 0.01,
                "passed": True,
            },
        ],
        "metrics": {
            "latency": {"unit": "ms", "phases": {"baseline": {"mean": 10.0}}},
            "errors": {"unit": "ratio", "phases": {}},
            "cpu": {"unit": "%", "phases": {}},
        },
        "findings": [
            {
                "kind": "degradation",
                "metric": "latency",
                "severity": "critical",
                "confidence": 0.9,
                "title": "latency degraded during the fault (+3000%)",
                "summary": "median 10 → 310 ms",
                "evidence": {"shift": 300.0, "p_value": 1e-6},
            },
            {
                "kind": "no_impact",
                "metric": "errors",
                "severity": "info",
                "confidence": 0.7,
                "title": "errors unaffected",
                "summary": "",
                "evidence": {},
            },
            {
                "kind": "insufficient_data",
                "metric": "cpu",
                "severity": "info",
                "confidence": 0.5,
                "title": "too few cpu samples",
                "summary": "",
                "evidence": {},
            },
        ],
        "recommendations": [{"title": "Set a client timeout", "advice": "~480 ms"}],
    }
    analysis.update(analysis_overrides)
    return {
        "run": {
            "id": 12,
            "experiment": "latency-demo",
            "target": "shop",
            "fault": {"type": "network.latency", "params": {"latency_ms": 300}},
            "status": "completed",
            "started_at": T0,
            "finished_at": T0 + 60,
            "injected_at": T0 + 20,
            "reverted_at": T0 + 40,
        },
        "analysis": analysis,
        "suggestions": [{"id": 3, "kind": "intensity", "title": "Try 600 ms", "rationale": "x"}],
        "series": {
            "latency": {
                "timestamps": [T0 + i for i in range(60)],
                "values": [10.0 + (300 if 20 <= i < 40 else 0) for i in range(60)],
                "phases": ["baseline"] * 20 + ["during"] * 20 + ["recovery"] * 20,
            }
        },
        "events": [{"at": T0, "kind": "transition", "phase": "baseline", "message": "a | b"}],
    }


def cases(root: ET.Element) -> dict[str, ET.Element]:
    return {f"{c.get('classname')}::{c.get('name')}": c for c in root.iter("testcase")}


def test_junit_has_a_suite_per_run_and_a_case_per_rule_metric_and_verdict():
    root = ET.fromstring(to_junit(report()))
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1 and suites[0].get("name") == "scep.latency-demo run 12"
    by_name = cases(root)
    assert set(by_name) == {
        "scep.latency-demo.hypothesis::p95 under 250 ms",
        "scep.latency-demo.hypothesis::errors under 1 %",
        "scep.latency-demo.metrics::latency",
        "scep.latency-demo.metrics::errors",
        "scep.latency-demo.metrics::cpu",
        "scep.latency-demo.verdict::steady-state hypothesis held",
    }
    rule = by_name["scep.latency-demo.hypothesis::p95 under 250 ms"].find("failure")
    assert rule is not None and "observed 320" in rule.text
    assert by_name["scep.latency-demo.hypothesis::errors under 1 %"].find("failure") is None
    latency = by_name["scep.latency-demo.metrics::latency"].find("failure")
    assert latency.get("type") == "degradation" and "+3000%" in latency.get("message")
    assert by_name["scep.latency-demo.metrics::errors"].find("failure") is None
    assert by_name["scep.latency-demo.metrics::cpu"].find("skipped") is not None
    verdict = by_name["scep.latency-demo.verdict::steady-state hypothesis held"]
    assert verdict.find("failure") is not None
    suite = suites[0]
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("6", "3", "0")
    assert suite.get("skipped") == "1" and suite.get("time") == "60.000"
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["verdict"] == "failed" and props["score"] == "42" and props["run"] == "12"


def test_junit_of_a_passed_run_has_no_failures_and_an_aborted_run_is_an_error():
    passed = report(verdict="passed", findings=[])
    passed["analysis"]["rules"][0].update(passed=True, observed=100.0)
    root = ET.fromstring(to_junit(passed))
    assert root.get("failures") == "0" and root.get("errors") == "0"

    aborted = report(verdict="inconclusive")
    aborted["run"].update(status="aborted", status_reason="stop condition: errors > 0.5")
    root = ET.fromstring(to_junit(aborted))
    error = cases(root)["scep.latency-demo.run::run completed"].find("error")
    assert error.get("type") == "aborted" and "stop condition" in error.text
    assert root.get("errors") == "1"


def test_junit_survives_control_characters_and_markup_in_messages():
    nasty = report()
    nasty["analysis"]["findings"][0]["summary"] = "bad \x00\x07 bytes <and> & tags"
    root = ET.fromstring(to_junit(nasty))
    assert "<and> & tags" in cases(root)["scep.latency-demo.metrics::latency"].find("failure").text


def test_markdown_has_the_summary_rules_findings_with_evidence_and_timeline():
    md = to_markdown(report())
    assert md.startswith("# SCEP report: latency-demo\n")
    assert "**Verdict: FAILED** (confidence 80%)" in md
    assert "Resilience score: **42**/100 (95 % interval 30–50)" in md
    assert "| p95 under 250 ms | p95(latency) over during <= 250 | 320 | 250 | **violated** |" in md
    assert "### [CRITICAL] latency degraded during the fault (+3000%)" in md
    assert "- shift: 300" in md and "- p_value: 1e-06" in md
    assert "1. **Set a client timeout** — ~480 ms" in md
    assert "Try 600 ms" in md
    assert "a \\| b" in md  # a pipe inside a table cell is escaped
    assert "<svg" not in md


def test_the_html_export_is_self_contained_with_inline_charts():
    export = export_report(report(), "html")
    html = export.content
    assert export.content_type.startswith("text/html") and export.filename == "scep-run-12.html"
    assert html.count("<svg") == 3  # one per metric, data or not
    assert 'data-metric="latency"' in html and html.count("no data") == 2
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', html)
    assert "<link" not in html and "<script" not in html
    assert "c-threshold" in html  # the rule's threshold drawn on the latency chart


def test_json_export_round_trips_and_unknown_formats_are_refused():
    export = export_report(report(), "json")
    assert json.loads(export.content)["run"]["id"] == 12
    assert set(FORMATS) == {"html", "md", "json", "junit"}
    with pytest.raises(UnknownFormat, match="expected one of: html, md, json, junit"):
        export_report(report(), "pdf")


# --- through the API, for a run analysed by the real engine -----------------------------


@pytest.fixture
def judged(experiment):
    from tests.support.reports import judged_run

    return judged_run(experiment)


@pytest.mark.django_db
def test_the_api_serves_every_format_to_a_viewer(viewer_client, judged):
    expected = {"html": "text/html", "md": "text/markdown", "json": "application/json"}
    expected["junit"] = "application/xml"
    for fmt, media in expected.items():
        response = viewer_client.get(f"/api/v1/runs/{judged.pk}/export/{fmt}/")
        assert response.status_code == 200, fmt
        assert response["Content-Type"].startswith(media)
        assert f'filename="scep-run-{judged.pk}.' in response["Content-Disposition"]
    junit = viewer_client.get(
        f"/api/v1/runs/{judged.pk}/export/junit/", HTTP_ACCEPT="application/xml"
    )
    root = ET.fromstring(junit.content)
    names = {c.get("name") for c in root.iter("testcase")}
    assert {m["name"] for m in judged.spec["metrics"]} <= names
    assert root.find("testsuite").get("failures") != "0"  # the shift broke the rule


@pytest.mark.django_db
def test_the_api_answers_400_for_an_unknown_format_and_401_without_credentials(
    viewer_client, anon_client, judged
):
    response = viewer_client.get(f"/api/v1/runs/{judged.pk}/export/pdf/")
    assert response.status_code == 400
    assert "expected one of: html, md, json, junit" in response.json()["errors"]["fmt"][0]
    assert viewer_client.get("/api/v1/runs/999999/export/json/").status_code == 404
    assert anon_client.get(f"/api/v1/runs/{judged.pk}/export/json/").status_code == 401


@pytest.mark.django_db
def test_the_export_endpoint_is_in_the_openapi_schema(viewer_client):
    schema = viewer_client.get("/api/v1/schema/?format=json").json()
    assert "/api/v1/runs/{id}/export/{fmt}/" in schema["paths"]
