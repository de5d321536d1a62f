"""Payload builders: one channel-neutral summary of an event, three wire formats.

``event_summary`` reads the run once and produces plain JSON (stored on the delivery,
so a retry sends what was true when the event happened). The per-kind builders are pure
functions of that summary, which keeps them trivial to test and to extend.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "build_payload",
    "event_summary",
    "pagerduty_payload",
    "pagerduty_severity",
    "probe_summary",
    "slack_payload",
    "webhook_payload",
]

SOURCE = "scep"
TOP_FINDINGS = 3
_SEVERITY_RANK = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
HIGH_SEVERITIES = ("high", "critical")


def report_path(run_id: int) -> str:
    """The API path of a run's report; a path, not a URL: SCEP does not know its host.

    Spelled out rather than ``reverse()``d: reversing loads the whole URLconf (and the
    analysis stack behind it), seconds in a worker that otherwise never needs it. A
    test pins this to the real route.
    """
    return f"/api/v1/runs/{run_id}/report/"


def _finding(f: Any) -> dict[str, Any]:
    return {
        "id": f.pk,
        "severity": f.severity,
        "title": f.title,
        "metric": f.metric,
        "confidence": f.confidence,
        "evidence": f.evidence,
    }


def top_findings(findings: Iterable[Any], limit: int = TOP_FINDINGS) -> list[dict[str, Any]]:
    """The most severe findings first, ties broken by confidence."""
    ranked = sorted(
        findings,
        key=lambda f: (_SEVERITY_RANK.get(f.severity, 0), f.confidence or 0.0),
        reverse=True,
    )
    return [_finding(f) for f in ranked[:limit]]


def event_summary(run: Any, event: str, findings: Iterable[Any] | None = None) -> dict[str, Any]:
    """Everything a receiver needs about ``event`` of ``run``, as plain JSON.

    ``findings`` defaults to the run's findings; for ``finding.high`` pass only the
    high/critical ones so the message is about them.
    """
    findings = list(run.findings.all() if findings is None else findings)
    return {
        "event": event,
        "run": {
            "id": run.pk,
            "experiment": run.experiment.name,
            "experiment_version": run.experiment_version,
            "target": run.experiment.target.name,
            "environment": run.experiment.target.environment,
            "status": run.status,
            "status_reason": run.status_reason,
            "verdict": run.verdict or None,
            "confidence": run.verdict_confidence,
            "score": run.score,
            "score_interval": (
                [run.score_low, run.score_high]
                if run.score_low is not None and run.score_high is not None
                else None
            ),
            "started_at": run.started_at.isoformat() if run.started_at else None,
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "dry_run": run.dry_run,
        },
        "findings": top_findings(findings),
        "findings_total": len(findings),
        "report_path": report_path(run.pk),
    }


def probe_summary(channel_name: str) -> dict[str, Any]:
    """A recognisable, harmless message for the channel's "send test" button."""
    return {
        "event": "test",
        "channel": channel_name,
        "run": None,
        "findings": [],
        "findings_total": 0,
        "report_path": None,
    }


# --- wording --------------------------------------------------------------------------


def headline(summary: dict[str, Any]) -> str:
    """One line that says what happened, for Slack text and PagerDuty summaries."""
    run = summary.get("run")
    if run is None:
        return f"SCEP test notification for channel {summary.get('channel', '')}"
    who = f"run {run['id']} of {run['experiment']} on {run['target']}"
    event = summary["event"]
    if event == "finding.high":
        worst = summary["findings"][0] if summary["findings"] else None
        what = f"{worst['severity']} finding: {worst['title']}" if worst else "high finding"
        return f"SCEP {who}: {what}"
    verdict = f", verdict {run['verdict']}" if run.get("verdict") else ""
    if run.get("confidence") is not None and verdict:
        verdict += f" ({run['confidence']:.0%} confidence)"
    reason = f": {run['status_reason']}" if run["status"] != "completed" else ""
    return f"SCEP {who} {run['status']}{verdict}{reason}"[:1000]


def _score_text(run: dict[str, Any]) -> str:
    if run.get("score") is None:
        return "n/a"
    text = f"{run['score']:.1f}"
    if run.get("score_interval"):
        low, high = run["score_interval"]
        text += f" [{low:.1f}–{high:.1f}]"
    return text


# --- wire formats ---------------------------------------------------------------------


def webhook_payload(summary: dict[str, Any]) -> dict[str, Any]:
    """Generic JSON: the summary itself, with a version and a ready-made text line."""
    return {"version": 1, "source": SOURCE, "text": headline(summary), **summary}


def slack_payload(summary: dict[str, Any]) -> dict[str, Any]:
    """Slack incoming-webhook JSON: ``text`` (fallback, notifications) plus Block Kit."""
    text = headline(summary)
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    run = summary.get("run")
    if run is not None:
        confidence = run.get("confidence")
        blocks.append(
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*Status*\n{run['status']}"},
                    {"type": "mrkdwn", "text": f"*Verdict*\n{run.get('verdict') or 'n/a'}"},
                    {
                        "type": "mrkdwn",
                        "text": "*Confidence*\n"
                        + (f"{confidence:.0%}" if confidence is not None else "n/a"),
                    },
                    {"type": "mrkdwn", "text": f"*Score*\n{_score_text(run)}"},
                ],
            }
        )
    if summary["findings"]:
        lines = [f"• *{f['severity']}* {f['title']}" for f in summary["findings"]]
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}})
    if summary.get("report_path"):
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"Report: `{summary['report_path']}`"}],
            }
        )
    return {"text": text, "blocks": blocks}


def pagerduty_severity(summary: dict[str, Any]) -> str:
    """Map an event onto PagerDuty's four severities.

    A critical finding pages as critical; a high finding, a failed hypothesis or a run
    that failed to execute is an error; an aborted or inconclusive run a warning; a
    passed run (or a test) is info.
    """
    event = summary["event"]
    if event == "finding.high":
        severities = {f["severity"] for f in summary["findings"]}
        return "critical" if "critical" in severities else "error"
    run = summary.get("run")
    if run is None:
        return "info"
    if run["status"] == "failed" or run.get("verdict") == "failed":
        return "error"
    if run["status"] == "aborted" or run.get("verdict") == "inconclusive":
        return "warning"
    return "info"


def pagerduty_payload(summary: dict[str, Any], routing_key: str) -> dict[str, Any]:
    """PagerDuty Events API v2 ``trigger``; one incident per run via the dedup key."""
    run = summary.get("run")
    dedup = f"scep-run-{run['id']}" if run else f"scep-test-{summary.get('channel', '')}"
    payload: dict[str, Any] = {
        "summary": headline(summary)[:1024],  # PagerDuty's limit
        "source": f"{SOURCE}:{run['target']}" if run else SOURCE,
        "severity": pagerduty_severity(summary),
        "class": summary["event"],
        "custom_details": summary,
    }
    if run:
        payload["component"] = run["experiment"]
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup,
        "payload": payload,
    }


def build_payload(kind: str, summary: dict[str, Any], *, routing_key: str = "") -> dict[str, Any]:
    """The body to POST to a channel of ``kind``."""
    if kind == "slack":
        return slack_payload(summary)
    if kind == "pagerduty":
        return pagerduty_payload(summary, routing_key)
    return webhook_payload(summary)
