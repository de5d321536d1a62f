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

import functools
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from analysis.charts import PHASE_COLOURS, Threshold, metric_chart
from analysis.charts import to_epoch as _epoch
from analysis.core.engine import jsonable

__all__ = [
    "GLANCE_HEADERS",
    "PHASE_COLOURS",
    "chart_marks",
    "format_evidence",
    "glance_cells",
    "glance_rows",
    "key_figures",
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


# --- at a glance, key figures and evidence: shared by the HTML and Markdown faces -------

#: Evidence keys whose numbers are in the metric's unit.
_UNIT_KEY = re.compile(
    r"(^|_)(mean|median|p50|p95|p99|min|max|std|mad|shift|tolerance|observed|threshold|"
    r"magnitude|deviation)($|_)"
)
#: Evidence keys that are fractions, shown as percentages.
_PERCENT_KEY = re.compile(r"(relative_effect|margin|fraction|ci_level|^confidence$)")
_P_KEYS = frozenset({"p_value", "p_adjusted", "alpha"})


def _instants(run: Mapping[str, Any]) -> tuple[float | None, float | None]:
    return _epoch(run.get("injected_at")), _epoch(run.get("reverted_at"))


def _seconds(value: Any) -> str:
    v = _finite(value)
    return "n/a" if v is None else f"{v:.3g} s" if abs(v) < 100 else f"{v:.0f} s"


def _percent(value: Any, signed: bool = True) -> str:
    v = _finite(value)
    if v is None:
        return "n/a"
    pct = v * 100
    sign = "+" if signed else ""
    return f"{pct:{sign}.0f} %" if abs(pct) >= 10 else f"{pct:{sign}.2g} %"


def _instant(value: Any, instants: tuple[float | None, float | None]) -> str:
    """An epoch as UTC time plus where it lies relative to the fault (why: a raw
    ``1.796e+09`` tells a reader nothing)."""
    ts = _epoch(value)
    if ts is None:
        return "n/a"
    text = _when(ts)
    injected, reverted = instants
    if reverted is not None and ts >= reverted:
        return f"{text} ({ts - reverted:.3g} s after the revert)"
    if injected is not None and ts >= injected:
        return f"{text} ({ts - injected:.3g} s after injection)"
    return text


@functools.lru_cache(maxsize=512)
def _key_kind(key: str) -> str:
    """How an evidence key's numbers read (cached: a 50-metric report formats thousands
    of values under a few dozen distinct keys, and the page has a 300 ms budget)."""
    if key.endswith(("_at", "_ts")) or key in ("at", "timestamp"):
        return "instant"
    if key.endswith("_s") or key == "seconds":
        return "seconds"
    if key in _P_KEYS:
        return "p"
    if _PERCENT_KEY.search(key):
        return "fraction" if key in ("ci_level", "confidence") else "change"
    return "unit" if _UNIT_KEY.search(key) else "plain"


def format_evidence(
    key: str, value: Any, unit: str = "", instants: tuple[float | None, float | None] = (None, None)
) -> str:
    """One evidence value as text a person reads: units on values in the metric's unit,
    seconds on durations, percentages on fractions, UTC times on epochs. Mappings are
    the renderers' business (they become sub-tables); here they are flattened."""
    key = str(key)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, _NUMBER):
        if not math.isfinite(value):
            return "n/a"
        kind = _key_kind(key)
        if kind == "plain":
            return _num(value)
        if kind == "unit":
            return _num(value, unit)
        if kind == "instant":
            return _instant(value, instants)
        if kind == "seconds":
            return _seconds(value)
        if kind == "p":
            return f"{value:.2g}"
        return _percent(value, signed=kind == "change")
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value or "—"
    if isinstance(value, list | tuple):
        if value and all(_finite(v) is not None for v in value) and _key_kind(key) == "unit":
            inner = ", ".join(_num(v) for v in value)
            return f"[{inner}] {unit}".strip()
        return "[" + ", ".join(format_evidence(key, v, unit, instants) for v in value) + "]"
    if isinstance(value, Mapping):
        return ", ".join(
            f"{k} {format_evidence(str(k), v, unit, instants)}" for k, v in value.items()
        )
    return str(value)


def key_figures(finding: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The few numbers of a finding worth reading first: p-value, shift with its interval,
    relative effect, time to impact and to recover; for a broken rule, observed against
    threshold. The rest of the evidence stays one click away."""
    ev = finding.get("evidence") or {}
    unit = str(ev.get("unit") or "")
    out: list[tuple[str, str]] = []
    if _finite(ev.get("observed")) is not None:
        text = f"{_num(ev['observed'], unit)}"
        if _finite(ev.get("effective_threshold")) is not None:
            op = ev.get("operator") or "vs"
            text += f" (required {op} {_num(ev['effective_threshold'], unit)})"
        out.append(("observed", text))
    if _finite(ev.get("p_value")) is not None:
        text = f"{ev['p_value']:.2g}"
        if _finite(ev.get("p_adjusted")) is not None:
            text += f" (adjusted {ev['p_adjusted']:.2g})"
        out.append(("p-value", text))
    if _finite(ev.get("shift")) is not None:
        text = f"{ev['shift']:+.4g} {unit}".rstrip()
        ci = ev.get("shift_ci")
        pair = isinstance(ci, list | tuple) and len(ci) == 2
        if pair and all(_finite(c) is not None for c in ci):
            level = _finite(ev.get("ci_level"))
            text += f" [{_percent(level, signed=False) if level else ''} CI {_num(ci[0])} … "
            text += f"{_num(ci[1])}]"
        out.append(("shift", text))
    if _finite(ev.get("relative_effect")) is not None:
        out.append(("vs baseline", _percent(ev["relative_effect"])))
    if _finite(ev.get("time_to_impact_s")) is not None:
        out.append(("time to impact", f"{_seconds(ev['time_to_impact_s'])} after injection"))
    if _finite(ev.get("time_to_recover_s")) is not None:
        out.append(("time to recover", f"{_seconds(ev['time_to_recover_s'])} after the revert"))
    elif ev.get("recovered") is False:
        out.append(("time to recover", "not recovered"))
    return out


def _median(stats: Any) -> float | None:
    if not isinstance(stats, Mapping):
        return None
    value = _finite(stats.get("p50"))
    return value if value is not None else _finite(stats.get("median"))


def glance_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per metric for the "at a glance" table: the medians before, during and
    after the fault, the change, the outcome, time to impact and to recover. Why a table
    of its own: it answers "what did the fault do to each metric" in one look, before a
    reader has to study any chart or finding."""
    run = report.get("run") or {}
    metrics = (report.get("analysis") or {}).get("metrics") or {}
    names = list(metrics) + [n for n in (report.get("series") or {}) if n not in metrics]
    rows = []
    for name in names:
        metric = metrics.get(name) or {}
        declared = (run.get("metrics") or {}).get(name) or {}
        phases = metric.get("phases") or {}
        during = metric.get("during") or {}
        medians = {p: _median(phases.get(p)) for p in ("baseline", "during", "recovery")}
        change = _finite(during.get("relative_effect"))
        if change is None and medians["baseline"] and medians["during"] is not None:
            change = (medians["during"] - medians["baseline"]) / abs(medians["baseline"])
        impact = metric.get("time_to_impact") or {}
        recover = metric.get("time_to_recover") or {}
        recovered = recover.get("recovered", metric.get("recovered"))
        rows.append(
            {
                "metric": str(name),
                "unit": str(metric.get("unit") or declared.get("unit") or ""),
                **medians,
                "change": change,
                "outcome": metric.get("outcome") or during.get("outcome"),
                "recovery_outcome": metric.get("recovery_outcome")
                or (metric.get("recovery") or {}).get("outcome"),
                "time_to_impact_s": _finite(impact.get("seconds")),
                "time_to_recover_s": _finite(recover.get("seconds")),
                "recovered": recovered if isinstance(recovered, bool) else None,
            }
        )
    return rows


def glance_cells(row: Mapping[str, Any]) -> list[str]:
    """A glance row as the text of its cells (metric, baseline, during, recovery, change,
    outcome, time to impact, time to recover): the same words in HTML and Markdown."""
    unit = row.get("unit") or ""
    outcome = str(row.get("outcome") or "n/a")
    if row.get("recovery_outcome"):
        outcome += f", after: {row['recovery_outcome']}"
    if row.get("time_to_recover_s") is not None:
        recover = _seconds(row["time_to_recover_s"])
    elif row.get("recovered") is False:
        recover = "not recovered"
    else:
        recover = "—"
    impact = _seconds(row["time_to_impact_s"]) if row.get("time_to_impact_s") is not None else "—"
    return [
        str(row["metric"]),
        _num(row.get("baseline"), unit),
        _num(row.get("during"), unit),
        _num(row.get("recovery"), unit),
        _percent(row.get("change")),
        outcome,
        impact,
        recover,
    ]


GLANCE_HEADERS = (
    "metric",
    "baseline median",
    "during",
    "recovery",
    "change",
    "outcome",
    "time to impact",
    "time to recover",
)

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
.headline{display:flex;flex-wrap:wrap;gap:8px 40px;align-items:flex-start}
.headline dl{flex:1 1 420px}
table.glance td,table.glance th{white-space:nowrap}table.glance{font-size:13px}
dl.figures{display:flex;flex-wrap:wrap;gap:4px 22px;margin:6px 0}
dl.figures div{display:flex;gap:6px}dl.figures dd{font-weight:600}
details.evidence,section.metric details{margin-top:6px;font-size:12px}
details>summary{cursor:pointer;color:#1f4e9c}
table.evidence th{white-space:nowrap;background:none;color:#6b7383;font-weight:400}
table.evidence>tbody>tr>th{width:1%}
table.sub{width:auto;margin:0}table.sub th,table.sub td{padding:1px 6px;border:0}
table.sub th{background:none;color:#6b7383;font-weight:400}
@media print{body{background:#fff}main{max-width:none;padding:0}
section,.card{break-inside:avoid;border-color:#999}
details::details-content{content-visibility:visible;display:block}
details>*{display:block}details>table{display:table}details>summary{color:#333}}
"""


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
        f'<section class="card summary" id="report-summary"><div class="headline">'
        f'<div><div class="verdict {_e(verdict)}">{_e(verdict)}</div>'
        f"<div>Confidence: <strong>{_e(conf_text)}</strong></div>"
        f"{_score_line(analysis.get('score'))}</div>"
        f"<dl>{dl}</dl></div>"
        f"<p>{_e(analysis.get('reason', ''))}</p>"
        f"{_rules_section(analysis)}</section>"
    )


def _score_line(score: Any) -> str:
    if not isinstance(score, Mapping) or score.get("value") is None:
        return ""
    return (
        f"<div>Resilience score: <strong>{_e(_num(score['value']))}</strong>/100 "
        f'<span class="muted">(95 % interval {_e(_num(score.get("low")))}–'
        f"{_e(_num(score.get('high')))})</span></div>"
    )


def _evidence_table(
    evidence: Mapping[str, Any], unit: str, instants: tuple[float | None, float | None]
) -> str:
    """Evidence as a small two-column table; a nested mapping becomes a sub-table (a grid
    when it maps names to records, like the per-phase statistics)."""
    rows = []
    for key, value in evidence.items():
        if isinstance(value, Mapping) and value:
            cell = _sub_table(str(key), value, unit, instants)
        else:
            cell = _e(format_evidence(str(key), value, unit, instants))
        rows.append(f"<tr><th>{_e(key)}</th><td>{cell}</td></tr>")
    return f'<table class="evidence">{"".join(rows)}</table>'


def _sub_table(
    key: str, value: Mapping[str, Any], unit: str, instants: tuple[float | None, float | None]
) -> str:
    records = [v for v in value.values() if isinstance(v, Mapping)]
    if len(records) == len(value):
        columns: list[str] = []
        for record in records:
            columns += [str(c) for c in record if str(c) not in columns]
        head = "".join(f"<th>{_e(c)}</th>" for c in columns)
        body = "".join(
            f"<tr><th>{_e(name)}</th>"
            + "".join(
                f'<td class="num">{_e(format_evidence(c, record.get(c), unit, instants))}</td>'
                for c in columns
            )
            + "</tr>"
            for name, record in value.items()
        )
        return f'<table class="sub"><tr><th></th>{head}</tr>{body}</table>'
    body = "".join(
        f'<tr><th>{_e(k)}</th><td class="num">'
        f"{_e(format_evidence(str(k), v, unit if _UNIT_KEY.search(key) else '', instants))}"
        "</td></tr>"
        for k, v in value.items()
    )
    return f'<table class="sub">{body}</table>'


def _glance_section(report: Mapping[str, Any]) -> str:
    rows = glance_rows(report)
    if not rows:
        return ""
    head = "".join(f"<th>{_e(h)}</th>" for h in GLANCE_HEADERS)
    body = []
    for row in rows:
        cells = glance_cells(row)
        outcomes = {row.get("outcome"), row.get("recovery_outcome")}
        cls = "bad" if "degraded" in outcomes else "ok" if row.get("outcome") == "ok" else ""
        body.append(
            f'<tr data-metric="{_e(row["metric"])}"><th>{_e(cells[0])}</th>'
            + "".join(f'<td class="num">{_e(c)}</td>' for c in cells[1:5])
            + f'<td class="{cls}">{_e(cells[5])}</td>'
            + "".join(f'<td class="num">{_e(c)}</td>' for c in cells[6:])
            + "</tr>"
        )
    return (
        '<h2 id="report-glance">At a glance</h2>'
        '<p class="muted">Medians before, during and after the fault; change is during vs '
        "baseline.</p>"
        f'<table class="glance"><tr>{head}</tr>{"".join(body)}</table>'
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
    return f'<h2 id="report-fix">What to fix</h2><ol>{rows}</ol>'


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
    return f'<h2 id="report-suggestions">Suggested next experiments</h2><ol>{rows}</ol>'


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
            f'<td class="num">{_e(_percent(comp.get("relative_effect")))}</td>'
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
        return '<h2 id="report-metrics">Metrics</h2><p class="muted">No metrics.</p>'
    out = ['<h2 id="report-metrics">Metrics</h2>']
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
            f'<section class="metric" data-metric="{_e(name)}"><h3>{_e(name)}{sub}</h3>{chart}'
            + (
                f"<details><summary>Statistics per phase</summary>{_stats_table(metric)}</details>"
                if metric
                else ""
            )
            + "</section>"
        )
    return "".join(out)


def _findings_section(report: Mapping[str, Any]) -> str:
    findings = (report.get("analysis") or {}).get("findings") or []
    if not findings:
        return '<h2 id="report-findings">Findings</h2><p class="muted">No findings.</p>'
    instants = _instants(report.get("run") or {})
    out = ['<h2 id="report-findings">Findings</h2>']
    for f in findings:
        sev = str(f.get("severity", "info"))
        conf = f.get("confidence")
        conf_text = f"{conf * 100:.0f}%" if isinstance(conf, int | float) else "n/a"
        evidence = f.get("evidence") or {}
        figures = "".join(
            f"<div><dt>{_e(label)}</dt><dd>{_e(text)}</dd></div>" for label, text in key_figures(f)
        )
        details = (
            f'<details class="evidence"><summary>All evidence ({len(evidence)} values)</summary>'
            f"{_evidence_table(evidence, str(evidence.get('unit') or ''), instants)}</details>"
            if evidence
            else ""
        )
        out.append(
            f'<section class="finding"><span class="badge sev-{_e(sev)}">{_e(sev)}</span> '
            f'<span class="muted">{_e(f.get("kind", ""))} · {_e(f.get("metric", ""))} · '
            f"confidence {_e(conf_text)}</span><h3>{_e(f.get('title', ''))}</h3>"
            f"<p>{_e(f.get('summary', ''))}</p>"
            + (f'<dl class="figures">{figures}</dl>' if figures else "")
            + f"{details}</section>"
        )
    return "".join(out)


def _rules_section(analysis: Mapping[str, Any]) -> str:
    rules = analysis.get("rules") or []
    if not rules:
        return '<h3>Hypothesis</h3><p class="muted">No rules were given.</p>'
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
        '<h3>Hypothesis</h3><table class="rules"><tr><th>name</th><th>rule</th>'
        "<th>observed</th>"
        "<th>threshold</th><th>result</th><th>explanation</th></tr>" + "".join(rows) + "</table>"
    )


def _events_section(report: Mapping[str, Any]) -> str:
    events = report.get("events") or []
    if not events:
        return '<h2 id="report-timeline">Timeline</h2><p class="muted">No events.</p>'
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
        '<h2 id="report-timeline">Timeline</h2><table><tr><th>at</th><th>offset</th>'
        "<th>kind</th><th>phase</th>"
        "<th>message</th></tr>" + "".join(rows) + "</table>"
    )


def render_body(
    report: Mapping[str, Any],
    *,
    suggestion_action: Callable[[Mapping[str, Any]], str] | None = None,
) -> str:
    """The report's sections as an HTML fragment: the web report page embeds it in its
    layout and ``render_html`` wraps it into a standalone document, so both show the same.

    The order answers a reader's questions in turn: did it hold (verdict, score, rules),
    what did the fault do to each metric (the at-a-glance table, then the charts), what
    to do about it, why we think so (findings), what to try next, and what happened when.

    ``suggestion_action`` may add markup (an accept button) after each suggestion.
    """
    run = report.get("run") or {}
    analysis = report.get("analysis") or {}
    return (
        _summary_section(run, analysis)
        + _glance_section(report)
        + _metrics_section(report)
        + _recommendations_section(analysis)
        + _findings_section(report)
        + _suggestions_section(report, suggestion_action)
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
