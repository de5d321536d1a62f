"""Exports of a run's report: JUnit for CI systems, Markdown, self-contained HTML, JSON,
from the module and through ``GET /api/v1/runs/{id}/export/{fmt}/``."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest

from analysis.exports import FORMATS, UnknownFormat, export_report, to_junit, to_markdown
from tests.web.test_browser import browser  # noqa: F401  (a real headless Chromium)

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
            "latency": {
                "unit": "ms",
                "phases": {
                    "baseline": {"mean": 10.0, "p50": 9.75},
                    "during": {"mean": 310.0, "p50": 309.5},
                    "recovery": {"mean": 11.0, "p50": 10.25},
                },
                "during": {"outcome": "degraded", "relative_effect": 30.74},
                "outcome": "degraded",
                "recovery_outcome": "ok",
                "time_to_impact": {"seconds": 1.5, "detected_at": T0 + 21.5},
                "time_to_recover": {"seconds": 5.5, "recovered": True, "recovered_at": T0 + 45.5},
            },
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
                "evidence": {
                    "unit": "ms",
                    "shift": 300.0,
                    "shift_ci": [296.0, 304.0],
                    "ci_level": 0.95,
                    "p_value": 1e-6,
                    "relative_effect": 30.74,
                    "time_to_impact_s": 1.5,
                    "time_to_recover_s": 5.5,
                    "recovered_at": T0 + 45.5,
                    "phases": {
                        "baseline": {"n": 20, "median": 9.75},
                        "during": {"n": 20, "median": 309.5},
                    },
                    "detectors": {"rank": 1.0, "cusum": 0.5},
                },
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


# --- readable at a glance: order, the glance table, key figures, folded evidence --------

HTML_ORDER = [
    'id="report-summary"',
    "<h3>Hypothesis</h3>",
    'id="report-glance"',
    'id="report-metrics"',
    '<section class="metric" data-metric="latency">',  # the first chart
    'id="report-fix"',
    'id="report-findings"',
    'id="report-suggestions"',
    'id="report-timeline"',
]
MD_ORDER = [
    "**Verdict: FAILED**",
    "### Hypothesis",
    "## At a glance",
    "## What to fix",
    "## Findings",
    "## Suggested next experiments",
    "## Timeline",
]


def positions(text: str, markers: list[str]) -> list[int]:
    found = [text.find(m) for m in markers]
    assert -1 not in found, [m for m, i in zip(markers, found, strict=True) if i < 0]
    return found


def test_html_and_markdown_sections_come_in_the_glance_first_order():
    html = export_report(report(), "html").content
    found = positions(html, HTML_ORDER)
    assert found == sorted(found), [m for _, m in sorted(zip(found, HTML_ORDER, strict=True))]
    assert html.find("<svg") > html.find('id="report-glance"')  # charts after the table
    md = to_markdown(report())
    found = positions(md, MD_ORDER)
    assert found == sorted(found), [m for _, m in sorted(zip(found, MD_ORDER, strict=True))]


def glance_html(html: str) -> dict[str, list[str]]:
    table = re.search(r'<table class="glance">(.*?)</table>', html, re.S).group(1)
    rows = {}
    for name, cells in re.findall(r'<tr data-metric="([^"]+)">(.*?)</tr>', table, re.S):
        rows[name] = [
            re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", cells)
        ]
    return rows


def number(text: str) -> float:
    return float(re.match(r"[+-]?[\d.]+(e[+-]?\d+)?", text).group(0))


def test_the_glance_table_shows_the_report_dicts_medians_change_and_times():
    data = report()
    latency = data["analysis"]["metrics"]["latency"]
    rows = glance_html(export_report(data, "html").content)
    assert list(rows) == ["latency", "errors", "cpu"]  # one row per metric, in order
    cells = rows["latency"]
    assert cells[0] == "latency"
    for cell, phase in zip(cells[1:4], ("baseline", "during", "recovery"), strict=True):
        assert cell.endswith(" ms") and number(cell) == latency["phases"][phase]["p50"]
    assert cells[4] == "+3074 %"  # relative_effect 30.74 as a percentage
    assert number(cells[4]) == round(latency["during"]["relative_effect"] * 100)
    assert cells[5] == "degraded, after: ok"
    assert number(cells[6]) == latency["time_to_impact"]["seconds"] and cells[6].endswith(" s")
    assert number(cells[7]) == latency["time_to_recover"]["seconds"]
    assert rows["errors"][1:4] == ["n/a", "n/a", "n/a"]  # no phases: said, not invented
    md = to_markdown(data)
    row = "| latency | 9.75 ms | 309.5 ms | 10.25 ms | +3074 % | degraded, after: ok | 1.5 s |"
    assert f"{row} 5.5 s |" in md


def test_epoch_timestamps_are_never_printed_raw():
    data = report()
    html, md = export_report(data, "html").content, to_markdown(data)
    for text in (html, md):
        assert "1.7e+09" not in text and "1700000045" not in text and "1.700000" not in text
        # the instant as UTC time, placed relative to the revert (T0 + 40)
        assert "2023-11-14 22:14:05 UTC (5.5 s after the revert)" in text


def test_findings_lead_with_key_figures_and_fold_the_evidence_into_a_readable_table():
    html = export_report(report(), "html").content
    finding = html[html.index('id="report-findings"') :]
    first = finding[: finding.index("</section>")]
    figures = dict(re.findall(r"<dt>([^<]*)</dt><dd>([^<]*)</dd>", first))
    assert figures["p-value"] == "1e-06"
    assert figures["shift"] == "+300 ms [95 % CI 296 … 304]"
    assert figures["vs baseline"] == "+3074 %"
    assert figures["time to impact"] == "1.5 s after injection"
    assert figures["time to recover"] == "5.5 s after the revert"
    assert first.index('<dl class="figures">') < first.index('<details class="evidence">')
    details = first[first.index("<details") : first.index("</details>")]
    assert "<summary>All evidence (11 values)</summary>" in details
    assert "<tr><th>shift_ci</th><td>[296, 304] ms</td></tr>" in details
    assert "<tr><th>ci_level</th><td>95 %</td></tr>" in details
    # a nested mapping is a sub-table (phases as a grid), not "baseline=n=20, median=..."
    phases = re.search(r"<th>phases</th><td>(<table class=\"sub\">.*?</table>)</td>", details)
    assert phases and "<th>median</th>" in phases.group(1) and "309.5 ms" in phases.group(1)
    assert "=" not in re.sub(r"<[^>]+>", "", details)
    # a finding without evidence has no empty fold
    assert html.count('<details class="evidence">') == 1
    # printing shows the folded content
    css = html[html.index("@media print") :]
    assert "details::details-content" in css and "content-visibility:visible" in css
    md = to_markdown(report())
    assert "<details><summary>All evidence</summary>" in md
    assert "  - during: n 20, median 309.5 ms" in md and "- detectors:" in md


@pytest.mark.slow
def test_printing_the_html_export_unfolds_the_evidence(browser, tmp_path):  # noqa: F811
    """In a real Chromium: the evidence is folded on screen and printed in full."""
    path = tmp_path / "report.html"
    path.write_text(export_report(report(), "html").content, encoding="utf-8")
    browser.get(path.as_uri())
    script = (
        "const d = document.querySelector('details.evidence');"
        "return [d.open, d.querySelector('table.evidence').checkVisibility()];"
    )
    assert browser.execute_script(script) == [False, False]  # folded on screen
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    assert browser.execute_script(script) == [False, True]  # unfolded on paper
