"""The report renderers: self-contained HTML with one chart per metric, strict JSON."""

from __future__ import annotations

import json
import re

import numpy as np

from analysis.core.engine import MetricData, RunData, analyse_run
from analysis.report import render_html, render_json, svg_chart

T0 = 1_700_000_000.0
EVIL = '<script>alert("x")</script>'


def make_report(names: tuple[str, ...] = ("api_latency", "error_rate")) -> dict:
    rng = np.random.default_rng(0)
    metrics, series = [], {}
    for i, name in enumerate(names):
        ts = T0 + np.arange(60, dtype=float)
        vs = rng.normal(100, 5, 60) + np.where((ts >= T0 + 20) & (ts < T0 + 40), 80 * i, 0)
        phases = ["baseline"] * 20 + ["during"] * 20 + ["recovery"] * 20
        split = {
            p: (ts[k : k + 20], vs[k : k + 20])
            for p, k in zip(("baseline", "during", "recovery"), (0, 20, 40), strict=True)
        }
        metrics.append(MetricData(name=name, better="lower", unit="ms", phases=split))
        values = vs.tolist()
        values[5] = float("nan")  # a gap must not break JSON
        series[name] = {"timestamps": ts.tolist(), "values": values, "phases": phases}
    analysis = analyse_run(
        RunData(metrics, [], injected_at=T0 + 20, reverted_at=T0 + 40, interval_s=1.0)
    )
    return {
        "run": {
            "id": 7,
            "experiment": "latency-demo",
            "target": "demo",
            "fault": {"type": "network.latency", "params": {"latency_ms": 300}},
            "status": "completed",
            "status_reason": "",
            "started_at": T0,
            "finished_at": "2023-11-14T22:14:20+00:00",
            "injected_at": T0 + 20,
            "reverted_at": T0 + 40,
        },
        "analysis": analysis.to_dict(),
        "series": series,
        "events": [
            {"at": T0 + 20, "kind": "inject", "phase": "during", "message": "fault injected"},
            {"at": T0 + 40, "kind": "revert", "phase": "recovery", "message": "<b>reverted</b>"},
        ],
    }


def test_html_has_one_svg_per_metric_and_no_external_assets() -> None:
    html = render_html(make_report())
    assert html.startswith("<!DOCTYPE html>")
    assert html.count("<svg") == 2
    assert "<style>" in html
    assert not re.search(r'(src|href)="https?://', html)
    for text in ("latency-demo", "network.latency", "baseline", "during", "recovery"):
        assert text in html
    assert 'class="c-inject"' in html and 'class="c-revert"' in html
    assert "api_latency (ms)" in html  # axis label with unit
    assert "&lt;b&gt;reverted&lt;/b&gt;" in html  # event message escaped


def test_malicious_metric_name_is_escaped() -> None:
    html = render_html(make_report(("api_latency", EVIL)))
    assert EVIL not in html
    assert "<script" not in html
    assert "&lt;script&gt;" in html


def test_json_round_trips() -> None:
    report = make_report()
    text = render_json(report)
    back = json.loads(text)
    assert back["run"]["id"] == 7
    assert back["series"]["api_latency"]["values"][5] is None
    assert back["analysis"]["verdict"] in ("passed", "failed", "inconclusive")
    assert render_json(back) == text


def test_chart_handles_empty_and_iso_times() -> None:
    assert "no data" in svg_chart("m", "", [], [])
    svg = svg_chart(
        "m",
        "req/s",
        ["2023-11-14T22:13:20+00:00", "2023-11-14T22:13:21+00:00"],
        [1.0, 2.0],
        ["baseline", "during"],
        injected_at="2023-11-14T22:13:21+00:00",
    )
    assert svg.count("<path") == 1 and 'class="c-inject"' in svg


def test_minimal_report_renders() -> None:
    html = render_html({})
    assert "No metrics." in html and "No findings." in html
