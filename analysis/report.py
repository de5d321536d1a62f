"""Render a run report as JSON or as one self-contained HTML page.

The HTML page has no external assets (inline CSS, hand-built SVG charts) so that it can
be mailed, attached to a ticket or opened offline years later. Every piece of text that
came from users or targets (metric names, messages, fault params) is HTML-escaped.

The ``report`` mapping, filled by the integrator::

    {
      "run": {
        "id": str | int, "experiment": str, "target": str,
        "fault": {"type": str, "params": {...}},
        "status": str, "status_reason": str,
        "started_at": ..., "finished_at": ...,    # epoch seconds, ISO-8601 string or None
        "injected_at": ..., "reverted_at": ...,   # same; drawn as vertical chart lines
        "metrics": {name: {"unit": str, "better": str}},  # optional, used if analysis lacks it
      },
      "analysis": AnalysisResult.to_dict(),       # see analysis.core.engine
      "series": {
        metric_name: {
          "timestamps": [epoch seconds, ...],
          "values": [float | None, ...],          # None/NaN = gap in the line
          "phases": ["baseline" | "during" | "recovery", ...],  # one per point
        },
      },
      "events": [{"at": epoch s | ISO str, "kind": str, "phase": str, "message": str}],
    }

Every key is optional; a missing part renders as "n/a" or an empty section.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from analysis.charts import PHASE_COLOURS, Threshold, metric_chart
from analysis.charts import to_epoch as _epoch
from analysis.core.engine import jsonable

__all__ = [
    "PHASE_COLOURS",
    "chart_marks",
    "render_body",
    "render_html",
    "render_json",
    "svg_chart",
]

STAT_KEYS = ("n", "mean", "p50", "p95", "p99", "min", "max", "std", "mad")


def render_json(report: Mapping[str, Any]) -> str:
    """Strict JSON (NaN becomes null) that ``json.loads`` turns back into the same report."""
    return json.dumps(jsonable(report), indent=2, allow_nan=False, ensure_ascii=False)


# --- small formatting helpers ------------------------------------------------------------


_NUMBER = (int, float)  # a tuple: ``int | float`` would build a union on every call


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _num(value: Any, unit: str = "") -> str:
    if isinstance(value, bool) or value is None:
        return "n/a" if value is None else str(value)
    if isinstance(value, _NUMBER):
        if not math.isfinite(value):
            return "n/a"
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        return f"{text} {unit}".strip()
    return str(value)


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _when(value: Any) -> str:
    ts = _epoch(value)
    if ts is None:
        return "n/a" if value in (None, "") else str(value)
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --- charts ------------------------------------------------------------------------------


def svg_chart(
    name: str,
    unit: str,
    timestamps: Sequence[Any],
    values: Sequence[Any],
    phases: Sequence[Any] | None = None,
    injected_at: Any = None,
    reverted_at: Any = None,
    width: int = 720,
    height: int = 270,
) -> str:
    """A metric chart without anomaly or threshold marks (see ``analysis.charts``)."""
    return metric_chart(
        name,
        unit,
        timestamps,
        values,
        phases,
        injected_at=injected_at,
        reverted_at=reverted_at,
        width=width,
        height=height,
    )


def chart_marks(report: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The anomalies and thresholds to draw on one metric's chart.

    Anomalies are the forecast detector's out-of-band segments; thresholds are the
    effective thresholds of the hypothesis rules on the metric and the limits of its
    stop conditions.
    """
    analysis = report.get("analysis") or {}
    metric = (analysis.get("metrics") or {}).get(name) or {}
    forecast = metric.get("forecast") or {}
    anomalies = []
    for seg in forecast.get("segments") or []:
        a, b = _finite(seg.get("start_ts")), _finite(seg.get("end_ts"))
        if a is not None and b is not None:
            anomalies.append((a, b))
    thresholds: list[Threshold] = []
    for rule in analysis.get("rules") or []:
        value = _finite(rule.get("effective_threshold"))
        if value is None:
            value = _finite(rule.get("threshold")) if rule.get("relative") != "baseline" else None
        if rule.get("metric") == name and value is not None:
            text = rule.get("name") or f"{rule.get('aggregate', '')} {rule.get('operator', '')}"
            thresholds.append(Threshold(value, f"rule: {text} {_num(value)}"))
    for cond in (report.get("run") or {}).get("stop_conditions") or []:
        value = _finite(cond.get("threshold"))
        if cond.get("metric") == name and value is not None and not cond.get("relative"):
            thresholds.append(Threshold(value, f"stop if {cond.get('operator', '')} {_num(value)}"))
    return {"anomalies": anomalies, "thresholds": thresholds}


# --- HTML sections -----------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1d2330;
margin:0;background:#f6f7f9}
main{max-width:980px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px}
h3{font-size:15px;margin:18px 0 6px}
section,.card{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:14px 16px;
margin:10px 0}
table{border-collapse:collapse;width:100%;margin:6px 0}
th,td{border-bottom:1px solid #eceef2;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f1f3f6;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#6b7383;fill:#6b7383}
.verdict{font-size:20px;font-weight:700;text-transform:uppercase}
.passed{color:#1d7a3a}.failed{color:#b3261e}.inconclusive{color:#8a6d00}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;
color:#fff;background:#6b7383}
.sev-critical{background:#7f1d1d}.sev-high{background:#b3261e}.sev-medium{background:#c76b00}
.sev-low{background:#8a8f00}.sev-info{background:#4a6fa5}
.ok{color:#1d7a3a}.bad{color:#b3261e}.unknown{color:#8a6d00}
svg.chart{max-width:100%;height:auto;background:#fff}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:0}
dt{color:#6b7383}dd{margin:0}
.kv{columns:3 200px;column-gap:18px;font-size:12px;margin:6px 0}.kv div{break-inside:avoid}
.kv .k{color:#6b7383}
@media print{body{background:#fff}main{max-width:none;padding:0}
section,.card{break-inside:avoid;border-color:#999}}
"""


def _kv_table(items: Mapping[str, Any]) -> str:
    """Evidence as compact key/value pairs flowing in columns (long lists stay short)."""
    rows = "".join(
        f'<div><span class="k">{_e(k)}</span> {_e(_fmt_value(v))}</div>' for k, v in items.items()
    )
    return f'<div class="kv">{rows}</div>'


def _fmt_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_fmt_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_fmt_value(v)}" for k, v in value.items())
    return _num(value)


def _summary_section(run: Mapping[str, Any], analysis: Mapping[str, Any]) -> str:
    fault = run.get("fault") or {}
    params = fault.get("params") or {}
    verdict = str(analysis.get("verdict", "inconclusive"))
    conf = analysis.get("confidence")
    conf_text = f"{conf * 100:.0f}%" if isinstance(conf, int | float) else "n/a"
    status = _e(run.get("status", "n/a"))
    if run.get("status_reason"):
        status += f' <span class="muted">({_e(run["status_reason"])})</span>'
    facts = {
        "Run": _e(run.get("id", "n/a")),
        "Target": _e(run.get("target", "n/a")),
        "Fault": _e(fault.get("type", "n/a"))
        + (f' <span class="muted">{_e(_fmt_value(params))}</span>' if params else ""),
        "Status": status,
        "Started": _e(_when(run.get("started_at"))),
        "Injected": _e(_when(run.get("injected_at"))),
        "Reverted": _e(_when(run.get("reverted_at"))),
        "Finished": _e(_when(run.get("finished_at"))),
    }
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in facts.items())
    return (
        f"<h1>{_e(run.get('experiment', 'Experiment'))}</h1>"
        f"<section><dl>{dl}</dl></section>"
        f'<section class="card"><div class="verdict {_e(verdict)}">{_e(verdict)}</div>'
        f"<div>Confidence: <strong>{_e(conf_text)}</strong></div>"
        f"{_score_line(analysis.get('score'))}"
        f"<p>{_e(analysis.get('reason', ''))}</p></section>"
    )


def _score_line(score: Any) -> str:
    if not isinstance(score, Mapping) or score.get("value") is None:
        return ""
    return (
        f"<div>Resilience score: <strong>{_e(_num(score['value']))}</strong>/100 "
        f'<span class="muted">(95 % interval {_e(_num(score.get("low")))}–'
        f"{_e(_num(score.get('high')))})</span></div>"
    )


def _recommendations_section(analysis: Mapping[str, Any]) -> str:
    items = analysis.get("recommendations") or []
    if not items:
        return ""
    rows = "".join(
        f"<li><strong>{_e(item.get('title', ''))}</strong> — {_e(item.get('advice', ''))}"
        + (
            f'<br><span class="muted">{_e(item.get("rationale", ""))}</span>'
            if item.get("rationale")
            else ""
        )
        + "</li>"
        for item in items
    )
    return f"<h2>What to fix</h2><ol>{rows}</ol>"


def _suggestions_section(
    report: Mapping[str, Any], action: Callable[[Mapping[str, Any]], str] | None = None
) -> str:
    items = report.get("suggestions") or []
    if not items:
        return ""
    rows = "".join(
        f"<li><strong>{_e(item.get('title', ''))}</strong> "
        f'<span class="muted">[{_e(item.get("kind", ""))}, suggestion #{_e(item.get("id", ""))}]'
        f"</span><br>{_e(item.get('rationale', ''))}{action(item) if action else ''}</li>"
        for item in items
    )
    return f"<h2>Suggested next experiments</h2><ol>{rows}</ol>"


def _stats_table(metric: Mapping[str, Any]) -> str:
    phases = metric.get("phases") or {}
    unit = metric.get("unit", "")
    head = "".join(f"<th>{_e(k)}</th>" for k in STAT_KEYS)
    rows = []
    for phase, stats in phases.items():
        stats = stats or {}
        cells = "".join(f'<td class="num">{_e(_num(stats.get(k)))}</td>' for k in STAT_KEYS)
        rows.append(f"<tr><th>{_e(phase)}</th>{cells}</tr>")
    comps = []
    for key in ("during", "recovery"):
        comp = metric.get(key) or {}
        if not comp:
            continue
        shift = comp.get("shift") or {}
        ci = f"[{_num(shift.get('low'))}, {_num(shift.get('high'))}]" if shift else "n/a"
        comps.append(
            f"<tr><th>{_e(key)} vs baseline</th><td>{_e(comp.get('outcome', 'n/a'))}</td>"
            f'<td class="num">{_e(_num(comp.get("p_value")))}</td>'
            f'<td class="num">{_e(_num(shift.get("shift"), unit))}</td>'
            f'<td class="num">{_e(ci)}</td>'
            f'<td class="num">{_e(_num(comp.get("relative_effect")))}</td>'
            f'<td class="num">{_e(_num(comp.get("tolerance"), unit))}</td></tr>'
        )
    comp_table = (
        "<table><tr><th>comparison</th><th>outcome</th><th>p-value</th><th>HL shift</th>"
        "<th>95% CI</th><th>relative</th><th>tolerance</th></tr>" + "".join(comps) + "</table>"
        if comps
        else ""
    )
    return f"<table><tr><th>phase</th>{head}</tr>{''.join(rows)}</table>{comp_table}"


def _metrics_section(report: Mapping[str, Any]) -> str:
    run = report.get("run") or {}
    metrics = (report.get("analysis") or {}).get("metrics") or {}
    series = report.get("series") or {}
    names = list(metrics) + [n for n in series if n not in metrics]
    if not names:
        return '<h2>Metrics</h2><p class="muted">No metrics.</p>'
    out = ["<h2>Metrics</h2>"]
    for name in names:
        metric = metrics.get(name) or {}
        data = series.get(name) or {}
        declared = (run.get("metrics") or {}).get(name) or {}  # optional spec echo
        unit = str(metric.get("unit") or declared.get("unit") or "")
        better = metric.get("better") or declared.get("better")
        sub = f' <span class="muted">{_e(unit)}{", " if unit and better else ""}'
        sub += f"{_e(better + ' is better') if better else ''}</span>"
        chart = metric_chart(
            str(name),
            unit,
            data.get("timestamps") or [],
            data.get("values") or [],
            data.get("phases") or [],
            injected_at=run.get("injected_at"),
            reverted_at=run.get("reverted_at"),
            **chart_marks(report, name),
        )
        out.append(
            f'<section class="metric"><h3>{_e(name)}{sub}</h3>{chart}'
            f"{_stats_table(metric) if metric else ''}</section>"
        )
    return "".join(out)


def _findings_section(analysis: Mapping[str, Any]) -> str:
    findings = analysis.get("findings") or []
    if not findings:
        return '<h2>Findings</h2><p class="muted">No findings.</p>'
    out = ["<h2>Findings</h2>"]
    for f in findings:
        sev = str(f.get("severity", "info"))
        conf = f.get("confidence")
        conf_text = f"{conf * 100:.0f}%" if isinstance(conf, int | float) else "n/a"
        out.append(
            f'<section><span class="badge sev-{_e(sev)}">{_e(sev)}</span> '
            f'<span class="muted">{_e(f.get("kind", ""))} · {_e(f.get("metric", ""))} · '
            f"confidence {_e(conf_text)}</span><h3>{_e(f.get('title', ''))}</h3>"
            f"<p>{_e(f.get('summary', ''))}</p>{_kv_table(f.get('evidence') or {})}</section>"
        )
    return "".join(out)


def _rules_section(analysis: Mapping[str, Any]) -> str:
    rules = analysis.get("rules") or []
    if not rules:
        return '<h2>Hypothesis rules</h2><p class="muted">No rules were given.</p>'
    rows = []
    for r in rules:
        passed = r.get("passed")
        cls, text = {True: ("ok", "passed"), False: ("bad", "violated")}.get(
            passed, ("unknown", "unknown")
        )
        rel = " x baseline" if r.get("relative") == "baseline" else ""
        rule_text = (
            f"{r.get('aggregate', '')}({r.get('metric', '')}) over {r.get('phase', '')} "
            f"{r.get('operator', '')} {_num(r.get('threshold'))}{rel}"
        )
        rows.append(
            f"<tr><td>{_e(r.get('name') or '')}</td><td>{_e(rule_text)}</td>"
            f'<td class="num">{_e(_num(r.get("observed")))}</td>'
            f'<td class="num">{_e(_num(r.get("effective_threshold")))}</td>'
            f'<td class="{cls}">{text}</td><td>{_e(r.get("explanation", ""))}</td></tr>'
        )
    return (
        "<h2>Hypothesis rules</h2><table><tr><th>name</th><th>rule</th><th>observed</th>"
        "<th>threshold</th><th>result</th><th>explanation</th></tr>" + "".join(rows) + "</table>"
    )


def _events_section(report: Mapping[str, Any]) -> str:
    events = report.get("events") or []
    if not events:
        return '<h2>Timeline</h2><p class="muted">No events.</p>'
    start = _epoch((report.get("run") or {}).get("started_at"))
    rows = []
    for ev in events:
        at = _epoch(ev.get("at"))
        offset = f"+{at - start:.1f}s" if at is not None and start is not None else ""
        rows.append(
            f'<tr><td>{_e(_when(ev.get("at")))}</td><td class="num">{_e(offset)}</td>'
            f"<td>{_e(ev.get('kind', ''))}</td><td>{_e(ev.get('phase', ''))}</td>"
            f"<td>{_e(ev.get('message', ''))}</td></tr>"
        )
    return (
        "<h2>Timeline</h2><table><tr><th>at</th><th>offset</th><th>kind</th><th>phase</th>"
        "<th>message</th></tr>" + "".join(rows) + "</table>"
    )


def render_body(
    report: Mapping[str, Any],
    *,
    suggestion_action: Callable[[Mapping[str, Any]], str] | None = None,
) -> str:
    """The report's sections as an HTML fragment: the web report page embeds it in its
    layout and ``render_html`` wraps it into a standalone document, so both show the same.

    ``suggestion_action`` may add markup (an accept button) after each suggestion.
    """
    run = report.get("run") or {}
    analysis = report.get("analysis") or {}
    return (
        _summary_section(run, analysis)
        + _findings_section(analysis)
        + _recommendations_section(analysis)
        + _suggestions_section(report, suggestion_action)
        + _rules_section(analysis)
        + _metrics_section(report)
        + _events_section(report)
    )


def render_html(report: Mapping[str, Any]) -> str:
    """A complete, self-contained HTML document for one run (see module docstring)."""
    report = jsonable(report)  # numpy scalars and datetimes become plain values
    run = report.get("run") or {}
    title = f"SCEP report: {run.get('experiment', 'experiment')} (run {run.get('id', '?')})"
    body = render_body(report)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )
