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
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from analysis.core.engine import jsonable

__all__ = ["render_html", "render_json", "svg_chart"]

PHASE_COLOURS = {"baseline": "#e3ecfa", "during": "#fbe3e1", "recovery": "#e2f4e6"}
STAT_KEYS = ("n", "mean", "p50", "p95", "p99", "min", "max", "std", "mad")


def render_json(report: Mapping[str, Any]) -> str:
    """Strict JSON (NaN becomes null) that ``json.loads`` turns back into the same report."""
    return json.dumps(jsonable(report), indent=2, allow_nan=False, ensure_ascii=False)


# --- small formatting helpers ------------------------------------------------------------


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _num(value: Any, unit: str = "") -> str:
    if isinstance(value, bool) or value is None:
        return "n/a" if value is None else str(value)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            return "n/a"
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        return f"{text} {unit}".strip()
    return str(value)


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _epoch(value: Any) -> float | None:
    """Epoch seconds from a number, an ISO-8601 string or a datetime; None otherwise."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _when(value: Any) -> str:
    ts = _epoch(value)
    if ts is None:
        return "n/a" if value in (None, "") else str(value)
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --- SVG chart ---------------------------------------------------------------------------


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    return [lo + (hi - lo) * i / (count - 1) for i in range(count)]


# Carried inside every chart so an SVG copied out of the page still draws correctly.
_SVG_CSS = (
    "text{font-family:system-ui,sans-serif}.axis{stroke:#555;stroke-width:1}"
    ".grid{stroke:#eee;stroke-width:1}.tick{font-size:10px;fill:#555}"
    ".axislabel{font-size:11px;fill:#333}.band{font-size:10px;fill:#777}"
    ".line{fill:none;stroke:#1f4e9c;stroke-width:1.5}.dot{fill:#1f4e9c}"
    ".inject{stroke:#b3261e;stroke-dasharray:4 3}.revert{stroke:#1d7a3a;stroke-dasharray:4 3}"
    ".injectlabel{font-size:10px;fill:#b3261e}.revertlabel{font-size:10px;fill:#1d7a3a}"
    ".muted{fill:#6b7383}"
)


def svg_chart(
    name: str,
    unit: str,
    timestamps: Sequence[Any],
    values: Sequence[Any],
    phases: Sequence[Any] | None = None,
    injected_at: Any = None,
    reverted_at: Any = None,
    width: int = 720,
    height: int = 240,
) -> str:
    """An inline SVG line chart of one metric with shaded phase bands and event lines.

    The x axis is seconds since the first sample, the y axis the metric in its unit.
    Missing values break the line instead of being drawn as zero.
    """
    left, right, top, bottom = 64, 16, 22, 42
    plot_w, plot_h = width - left - right, height - top - bottom
    label = f"{name} ({unit})" if unit else name
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{_e(label)}"><title>{_e(label)}</title><style>{_SVG_CSS}</style>'
    )
    ts_list = list(timestamps or [])
    vs_list = list(values or [])
    ph_list = list(phases or [])
    points = []
    for i, (t, v) in enumerate(zip(ts_list, vs_list, strict=False)):
        tt, vv = _epoch(t), _finite(v)
        phase = ph_list[i] if i < len(ph_list) else None
        points.append((tt, vv, phase))
    finite = [(t, v) for t, v, _ in points if t is not None and v is not None]
    if not finite:
        return (
            f'{head}<text x="{width / 2}" y="{height / 2}" text-anchor="middle" '
            f'class="muted">no data</text></svg>'
        )

    t0 = min(t for t, _ in finite)
    t1 = max(t for t, _ in finite)
    v0 = min(v for _, v in finite)
    v1 = max(v for _, v in finite)
    if t1 == t0:
        t1 = t0 + 1.0
    pad = (v1 - v0) * 0.05 if v1 > v0 else max(abs(v0) * 0.1, 1.0)
    v0, v1 = v0 - pad, v1 + pad

    def x(t: float) -> float:
        return left + (t - t0) / (t1 - t0) * plot_w

    def y(v: float) -> float:
        return top + (1.0 - (v - v0) / (v1 - v0)) * plot_h

    parts = [head]
    # Phase bands: from a phase's first to its last sample.
    spans: dict[str, list[float]] = {}
    for t, _, phase in points:
        if t is not None and phase in PHASE_COLOURS:
            lo_hi = spans.setdefault(phase, [t, t])
            lo_hi[0], lo_hi[1] = min(lo_hi[0], t), max(lo_hi[1], t)
    ordered = sorted(spans.items(), key=lambda item: item[1][0])
    for i, (phase, (lo, hi)) in enumerate(ordered):
        # Run each band up to the next phase's first sample so the bands tile the time axis.
        end = ordered[i + 1][1][0] if i + 1 < len(ordered) else hi
        xa, xb = x(lo), x(max(hi, end))
        parts.append(
            f'<rect x="{xa:.1f}" y="{top}" width="{max(xb - xa, 1.0):.1f}" height="{plot_h}" '
            f'fill="{PHASE_COLOURS[phase]}"><title>{_e(phase)}</title></rect>'
            f'<text x="{xa + 3:.1f}" y="{top + 11}" class="band">{_e(phase)}</text>'
        )
    # Axes, ticks and labels.
    parts.append(
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" class="axis"/>'
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'class="axis"/>'
    )
    for v in _ticks(v0, v1):
        parts.append(
            f'<line x1="{left - 4}" y1="{y(v):.1f}" x2="{left + plot_w}" y2="{y(v):.1f}" '
            f'class="grid"/><text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end" '
            f'class="tick">{_e(f"{v:.4g}")}</text>'
        )
    for t in _ticks(t0, t1):
        parts.append(
            f'<text x="{x(t):.1f}" y="{top + plot_h + 14}" text-anchor="middle" '
            f'class="tick">{_e(f"{t - t0:.0f}")}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle" '
        'class="axislabel">time since start (s)</text>'
        f'<text x="14" y="{top + plot_h / 2}" text-anchor="middle" class="axislabel" '
        f'transform="rotate(-90 14 {top + plot_h / 2})">{_e(label)}</text>'
    )
    # Injection and revert instants.
    for when, cls, text in ((injected_at, "inject", "inject"), (reverted_at, "revert", "revert")):
        t = _epoch(when)
        if t is not None and t0 <= t <= t1:
            parts.append(
                f'<line x1="{x(t):.1f}" y1="{top}" x2="{x(t):.1f}" y2="{top + plot_h}" '
                f'class="{cls}"/><text x="{x(t) + 3:.1f}" y="{top - 6}" '
                f'class="{cls}label">{text}</text>'
            )
    # The series, broken at gaps.
    path, pen_down = [], False
    for t, v, _ in points:
        if t is None or v is None:
            pen_down = False
            continue
        path.append(f"{'L' if pen_down else 'M'}{x(t):.1f},{y(v):.1f}")
        pen_down = True
    parts.append(f'<path d="{" ".join(path)}" class="line"/>')
    if len(finite) == 1:
        t, v = finite[0]
        parts.append(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.5" class="dot"/>')
    parts.append("</svg>")
    return "".join(parts)


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
"""


def _kv_table(items: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{_e(k)}</th><td>{_e(_fmt_value(v))}</td></tr>" for k, v in items.items()
    )
    return f"<table>{rows}</table>"


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


def _suggestions_section(report: Mapping[str, Any]) -> str:
    items = report.get("suggestions") or []
    if not items:
        return ""
    rows = "".join(
        f"<li><strong>{_e(item.get('title', ''))}</strong> "
        f'<span class="muted">[{_e(item.get("kind", ""))}, suggestion #{_e(item.get("id", ""))}]'
        f"</span><br>{_e(item.get('rationale', ''))}</li>"
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
        chart = svg_chart(
            str(name),
            unit,
            data.get("timestamps") or [],
            data.get("values") or [],
            data.get("phases") or [],
            run.get("injected_at"),
            run.get("reverted_at"),
        )
        out.append(
            f"<section><h3>{_e(name)}{sub}</h3>{chart}"
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


def render_html(report: Mapping[str, Any]) -> str:
    """A complete, self-contained HTML document for one run (see module docstring)."""
    report = jsonable(report)  # numpy scalars and datetimes become plain values
    run = report.get("run") or {}
    analysis = report.get("analysis") or {}
    title = f"SCEP report: {run.get('experiment', 'experiment')} (run {run.get('id', '?')})"
    body = (
        _summary_section(run, analysis)
        + _findings_section(analysis)
        + _recommendations_section(analysis)
        + _suggestions_section(report)
        + _rules_section(analysis)
        + _metrics_section(report)
        + _events_section(report)
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )
