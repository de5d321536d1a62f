"""A run's report as downloadable files: self-contained HTML, Markdown, JSON, JUnit XML.

One module serves the web report page's download links, the API
(``GET /api/v1/runs/{id}/export/{fmt}/``) and the CLI, so a file looks the same wherever
it came from. Each exporter takes the report mapping of ``analysis.services.build_report``
and returns text; ``export_report`` adds the media type and a file name.

JUnit is for CI systems: one ``<testsuite>`` per run, one ``<testcase>`` per
steady-state rule, one per metric (failing when the analysis found it hurt) and one for
the overall verdict, so a pipeline shows *which* expectation broke, not only that the
experiment failed. A run that did not complete is an ``<error>``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from analysis.charts import to_epoch
from analysis.core.engine import jsonable
from analysis.report import (
    GLANCE_HEADERS,
    format_evidence,
    glance_cells,
    glance_rows,
    key_figures,
    render_html,
    render_json,
)

__all__ = [
    "ADVERSE_KINDS",
    "FORMATS",
    "Export",
    "UnknownFormat",
    "export_report",
    "export_run",
    "to_junit",
    "to_markdown",
]

#: fmt -> (media type, file extension)
FORMATS: dict[str, tuple[str, str]] = {
    "html": ("text/html; charset=utf-8", "html"),
    "md": ("text/markdown; charset=utf-8", "md"),
    "json": ("application/json", "json"),
    "junit": ("application/xml; charset=utf-8", "xml"),
}

#: Finding kinds that mean the metric was hurt (a JUnit failure of the metric's case).
ADVERSE_KINDS = frozenset(
    {
        "degradation",
        "error_spike",
        "saturation",
        "collateral_impact",
        "slow_recovery",
        "no_recovery",
        "hypothesis_violated",
    }
)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


class UnknownFormat(ValueError):
    """An export format other than the ones in ``FORMATS``."""

    def __init__(self, fmt: str):
        self.fmt = fmt
        super().__init__(f"unknown export format {fmt!r}; expected one of: {', '.join(FORMATS)}")


@dataclass(frozen=True)
class Export:
    content: str
    content_type: str
    filename: str


def export_report(report: Mapping[str, Any], fmt: str) -> Export:
    """Render ``report`` as ``fmt`` (a key of ``FORMATS``), or raise ``UnknownFormat``."""
    if fmt not in FORMATS:
        raise UnknownFormat(fmt)
    renderers = {"html": render_html, "md": to_markdown, "json": render_json, "junit": to_junit}
    content_type, ext = FORMATS[fmt]
    run_id = (report.get("run") or {}).get("id", "report")
    return Export(renderers[fmt](report), content_type, f"scep-run-{run_id}.{ext}")


def export_run(run: Any, fmt: str) -> Export:
    """Build the run's report and render it as ``fmt`` (the format is checked first, so a
    bad format costs no database work)."""
    from analysis.services import build_report

    if fmt not in FORMATS:
        raise UnknownFormat(fmt)
    return export_report(build_report(run), fmt)


# --- helpers -----------------------------------------------------------------------------


def _num(value: Any, unit: str = "") -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value} {unit}".strip()
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return "n/a"
        return f"{value:.4g} {unit}".strip()
    return "n/a" if value is None else str(value)


def _when(value: Any) -> str:
    ts = to_epoch(value)
    if ts is None:
        return "n/a"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _cell(value: Any) -> str:
    """Text safe inside a Markdown table cell: no pipes, no line breaks."""
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip()


def _flat(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_flat(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_flat(v)}" for k, v in value.items())
    return _num(value) if isinstance(value, int | float | bool) or value is None else str(value)


def _evidence_lines(
    evidence: Mapping[str, Any], unit: str, instants: tuple[float | None, float | None]
) -> list[str]:
    """Evidence as a bullet list with readable values; a nested mapping (the per-phase
    statistics, the detector votes) becomes indented bullets rather than one flat line."""
    lines = []
    for key, value in evidence.items():
        if isinstance(value, Mapping) and value:
            lines.append(f"- {key}:")
            for k, v in value.items():
                if isinstance(v, Mapping):
                    text = ", ".join(
                        f"{kk} {format_evidence(str(kk), vv, unit, instants)}"
                        for kk, vv in v.items()
                    )
                else:
                    text = format_evidence(str(k), v, unit if key != "detectors" else "", instants)
                lines.append(f"  - {k}: {text}")
        else:
            lines.append(f"- {key}: {format_evidence(str(key), value, unit, instants)}")
    return lines


def _rule_text(rule: Mapping[str, Any]) -> str:
    rel = " x baseline" if rule.get("relative") == "baseline" else ""
    return (
        f"{rule.get('aggregate', '')}({rule.get('metric', '')}) over {rule.get('phase', '')} "
        f"{rule.get('operator', '')} {_num(rule.get('threshold'))}{rel}"
    )


# --- Markdown ----------------------------------------------------------------------------


def to_markdown(report: Mapping[str, Any]) -> str:
    """The report as GitHub-flavoured Markdown, for tickets and wikis, in the HTML
    report's order (summary and hypothesis, at a glance, what to fix, findings,
    suggestions, timeline; no charts). The only HTML is the ``<details>`` block that
    folds each finding's full evidence, which GitHub and GitLab render as a toggle."""
    report = jsonable(report)
    run = report.get("run") or {}
    analysis = report.get("analysis") or {}
    fault = run.get("fault") or {}
    out: list[str] = [f"# SCEP report: {run.get('experiment', 'experiment')}", ""]
    out += [
        "| | |",
        "|---|---|",
        f"| Run | {_cell(run.get('id', 'n/a'))} |",
        f"| Target | {_cell(run.get('target', 'n/a'))} |",
        f"| Fault | {_cell(fault.get('type', 'n/a'))} {_cell(_flat(fault.get('params') or {}))} |",
        f"| Status | {_cell(run.get('status', 'n/a'))} {_cell(run.get('status_reason') or '')} |",
        f"| Started | {_when(run.get('started_at'))} |",
        f"| Injected | {_when(run.get('injected_at'))} |",
        f"| Reverted | {_when(run.get('reverted_at'))} |",
        f"| Finished | {_when(run.get('finished_at'))} |",
        "",
    ]
    verdict = analysis.get("verdict") or run.get("verdict") or "none"
    conf = analysis.get("confidence")
    conf_text = f"{conf * 100:.0f}%" if isinstance(conf, int | float) else "n/a"
    out.append(f"**Verdict: {str(verdict).upper()}** (confidence {conf_text})")
    score = analysis.get("score") or {}
    if isinstance(score, Mapping) and score.get("value") is not None:
        out.append("")
        out.append(
            f"Resilience score: **{_num(score['value'])}**/100 "
            f"(95 % interval {_num(score.get('low'))}–{_num(score.get('high'))})"
        )
    if analysis.get("reason"):
        out += ["", str(analysis["reason"])]

    rules = analysis.get("rules") or []
    out += ["", "### Hypothesis", ""]
    if rules:
        out += ["| rule | check | observed | threshold | result |", "|---|---|---|---|---|"]
        for r in rules:
            result = {True: "passed", False: "**violated**"}.get(r.get("passed"), "unknown")
            out.append(
                f"| {_cell(r.get('name') or '')} | {_cell(_rule_text(r))} | "
                f"{_num(r.get('observed'))} | {_num(r.get('effective_threshold'))} | {result} |"
            )
    else:
        out.append("No rules were given.")

    rows = glance_rows(report)
    if rows:
        out += [
            "",
            "## At a glance",
            "",
            "Medians before, during and after the fault; change is during vs baseline.",
            "",
            "| " + " | ".join(GLANCE_HEADERS) + " |",
            "|---|" + "---:|" * 4 + "---|---:|---:|",
        ]
        out += ["| " + " | ".join(_cell(c) for c in glance_cells(row)) + " |" for row in rows]
    out.append("")

    recs = analysis.get("recommendations") or []
    if recs:
        out += ["## What to fix", ""]
        for i, item in enumerate(recs, 1):
            out.append(f"{i}. **{item.get('title', '')}** — {item.get('advice', '')}")
        out.append("")

    findings = analysis.get("findings") or []
    out += ["## Findings", ""]
    if not findings:
        out += ["No findings.", ""]
    instants = (to_epoch(run.get("injected_at")), to_epoch(run.get("reverted_at")))
    for f in findings:
        conf = f.get("confidence")
        conf_text = f"{conf * 100:.0f}%" if isinstance(conf, int | float) else "n/a"
        out += [
            f"### [{str(f.get('severity', 'info')).upper()}] {f.get('title', '')}",
            "",
            f"*{f.get('kind', '')}* on `{f.get('metric', '')}`, confidence {conf_text}.",
        ]
        if f.get("summary"):
            out += ["", str(f["summary"])]
        figures = key_figures(f)
        if figures:
            out += ["", " · ".join(f"{label} **{text}**" for label, text in figures)]
        evidence = f.get("evidence") or {}
        if evidence:
            out += ["", "<details><summary>All evidence</summary>", ""]
            out += _evidence_lines(evidence, str(evidence.get("unit") or ""), instants)
            out += ["", "</details>"]
        out.append("")

    suggestions = report.get("suggestions") or []
    if suggestions:
        out += ["## Suggested next experiments", ""]
        for i, item in enumerate(suggestions, 1):
            out.append(
                f"{i}. **{item.get('title', '')}** ({item.get('kind', '')}, "
                f"suggestion #{item.get('id', '')}) — {item.get('rationale', '')}"
            )
        out.append("")

    events = report.get("events") or []
    out += ["## Timeline", ""]
    if events:
        out += ["| at | kind | phase | message |", "|---|---|---|---|"]
        for ev in events:
            out.append(
                f"| {_when(ev.get('at'))} | {_cell(ev.get('kind', ''))} | "
                f"{_cell(ev.get('phase', ''))} | {_cell(ev.get('message', ''))} |"
            )
    else:
        out.append("No events.")
    return "\n".join(out).rstrip() + "\n"


# --- JUnit XML ---------------------------------------------------------------------------


def _case(suite: ET.Element, classname: str, name: str, seconds: float = 0.0) -> ET.Element:
    return ET.SubElement(
        suite, "testcase", {"classname": classname, "name": name, "time": f"{seconds:.3f}"}
    )


def to_junit(report: Mapping[str, Any]) -> str:
    """JUnit XML for CI systems (see the module docstring for the mapping)."""
    report = jsonable(report)
    run = report.get("run") or {}
    analysis = report.get("analysis") or {}
    experiment = str(run.get("experiment") or "experiment")
    prefix = f"scep.{experiment}"
    start, end = to_epoch(run.get("started_at")), to_epoch(run.get("finished_at"))
    duration = end - start if start is not None and end is not None and end >= start else 0.0

    root = ET.Element("testsuites", {"name": "scep"})
    suite = ET.SubElement(
        root,
        "testsuite",
        {
            "name": f"{prefix} run {run.get('id', '?')}",
            "timestamp": datetime.fromtimestamp(start, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
            if start is not None
            else "",
            "time": f"{duration:.3f}",
        },
    )
    props = ET.SubElement(suite, "properties")
    score = analysis.get("score") or {}
    for key, value in (
        ("run", run.get("id")),
        ("target", run.get("target")),
        ("fault", (run.get("fault") or {}).get("type")),
        ("status", run.get("status")),
        ("verdict", analysis.get("verdict") or run.get("verdict")),
        ("confidence", analysis.get("confidence")),
        ("score", score.get("value") if isinstance(score, Mapping) else None),
    ):
        if value not in (None, ""):
            ET.SubElement(props, "property", {"name": key, "value": _flat(value)})

    status = str(run.get("status") or "")
    if status and status != "completed":
        case = _case(suite, f"{prefix}.run", "run completed", duration)
        ET.SubElement(case, "error", {"message": f"run {status}", "type": status}).text = str(
            run.get("status_reason") or f"the run ended {status}"
        )

    for i, rule in enumerate(analysis.get("rules") or [], 1):
        case = _case(suite, f"{prefix}.hypothesis", str(rule.get("name") or _rule_text(rule)))
        passed = rule.get("passed")
        detail = (
            f"{_rule_text(rule)}: observed {_num(rule.get('observed'))}, threshold "
            f"{_num(rule.get('effective_threshold'))}. {rule.get('explanation', '')}"
        ).strip()
        if passed is False:
            ET.SubElement(
                case, "failure", {"message": f"rule {i} violated", "type": "hypothesis_violated"}
            ).text = detail
        elif passed is None:
            ET.SubElement(case, "skipped", {"message": f"not evaluated: {detail}"})

    findings = analysis.get("findings") or []
    by_metric: dict[str, list[Mapping[str, Any]]] = {}
    for f in findings:
        by_metric.setdefault(str(f.get("metric") or ""), []).append(f)
    names = list(analysis.get("metrics") or {}) or [n for n in by_metric if n]
    for name in names:
        case = _case(suite, f"{prefix}.metrics", name)
        mine = by_metric.get(name, [])
        adverse = [f for f in mine if f.get("kind") in ADVERSE_KINDS]
        if adverse:
            worst = adverse[0]
            ET.SubElement(
                case,
                "failure",
                {"message": str(worst.get("title", "")), "type": str(worst.get("kind", ""))},
            ).text = "\n".join(
                f"[{f.get('severity', '')}] {f.get('title', '')}: {f.get('summary', '')} "
                f"({_flat(f.get('evidence') or {})})"
                for f in adverse
            )
        elif any(f.get("kind") == "insufficient_data" for f in mine):
            ET.SubElement(case, "skipped", {"message": "insufficient data"})
        elif mine:
            ET.SubElement(case, "system-out").text = "\n".join(
                f"{f.get('kind', '')}: {f.get('title', '')}" for f in mine
            )

    verdict = str(analysis.get("verdict") or run.get("verdict") or "")
    case = _case(suite, f"{prefix}.verdict", "steady-state hypothesis held", duration)
    reason = str(analysis.get("reason") or run.get("verdict_reason") or "")
    if verdict == "failed":
        ET.SubElement(
            case, "failure", {"message": "verdict: failed", "type": "verdict"}
        ).text = reason
    elif verdict != "passed":
        ET.SubElement(case, "skipped", {"message": f"verdict: {verdict or 'none'}. {reason}"})

    cases = suite.findall("testcase")
    counts = {
        "tests": len(cases),
        "failures": sum(1 for c in cases if c.find("failure") is not None),
        "errors": sum(1 for c in cases if c.find("error") is not None),
        "skipped": sum(1 for c in cases if c.find("skipped") is not None),
    }
    for key, value in counts.items():
        suite.set(key, str(value))
        if key != "skipped":
            root.set(key, str(value))
    root.set("time", f"{duration:.3f}")
    ET.indent(root)
    text = ET.tostring(root, encoding="unicode")
    # Control characters (from a target's error message, say) are not allowed in XML 1.0.
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + _CONTROL.sub("", text) + "\n"
