"""Payload shapes, severity mapping, URL redaction and encryption at rest."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from analysis.models import Finding
from experiments.services.runs import start_run
from notifications import crypto
from notifications.formats import (
    build_payload,
    event_summary,
    pagerduty_payload,
    pagerduty_severity,
    probe_summary,
    slack_payload,
    webhook_payload,
)
from notifications.redact import redact_text, redact_url

SECRET_URL = "https://hooks.example.com/services/T0001/B0002/s3cr3t-token?x=1"


def _summary(event: str = "run.finished", **run: Any) -> dict[str, Any]:
    base = {
        "id": 7,
        "experiment": "latency-demo",
        "experiment_version": 2,
        "target": "demo",
        "environment": "staging",
        "status": "completed",
        "status_reason": "all phases completed",
        "verdict": "passed",
        "confidence": 0.93,
        "score": 81.5,
        "score_interval": [74.0, 88.0],
        "started_at": None,
        "finished_at": None,
        "dry_run": False,
    }
    base.update(run)
    return {
        "event": event,
        "run": base,
        "findings": [{"id": 1, "severity": "high", "title": "p95 latency up 4x"}],
        "findings_total": 1,
        "report_path": "/api/v1/runs/7/report/",
    }


def test_webhook_payload_carries_the_whole_summary() -> None:
    body = webhook_payload(_summary())
    assert body["event"] == "run.finished"
    assert body["run"]["id"] == 7
    assert body["run"]["score_interval"] == [74.0, 88.0]
    assert body["report_path"] == "/api/v1/runs/7/report/"
    assert "latency-demo" in body["text"] and "passed" in body["text"]


def test_slack_payload_has_text_and_blocks() -> None:
    body = slack_payload(_summary())
    assert set(body) == {"text", "blocks"}
    assert body["text"].startswith("SCEP run 7 of latency-demo on demo completed")
    kinds = [b["type"] for b in body["blocks"]]
    assert kinds == ["section", "section", "section", "context"]
    fields = " ".join(f["text"] for f in body["blocks"][1]["fields"])
    assert "93%" in fields and "81.5 [74.0–88.0]" in fields
    assert "p95 latency up 4x" in body["blocks"][2]["text"]["text"]


def test_pagerduty_payload_follows_events_api_v2() -> None:
    body = pagerduty_payload(_summary(verdict="failed"), "R0UTING")
    assert body["routing_key"] == "R0UTING"
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == "scep-run-7"
    payload = body["payload"]
    assert set(payload) >= {"summary", "source", "severity", "custom_details"}
    assert payload["severity"] == "error"
    assert payload["source"] == "scep:demo"
    assert payload["custom_details"]["run"]["id"] == 7


@pytest.mark.parametrize(
    ("event", "run", "severities", "expected"),
    [
        ("run.finished", {"verdict": "passed"}, [], "info"),
        ("run.finished", {"verdict": "failed"}, [], "error"),
        ("run.finished", {"verdict": "inconclusive"}, [], "warning"),
        ("run.failed", {"status": "failed", "verdict": "inconclusive"}, [], "error"),
        ("run.aborted", {"status": "aborted", "verdict": "inconclusive"}, [], "warning"),
        ("finding.high", {}, ["high"], "error"),
        ("finding.high", {}, ["high", "critical"], "critical"),
    ],
)
def test_pagerduty_severity_mapping(
    event: str, run: dict[str, Any], severities: list[str], expected: str
) -> None:
    summary = _summary(event, **run)
    summary["findings"] = [{"severity": s, "title": s} for s in severities]
    assert pagerduty_severity(summary) == expected


def test_test_event_formats() -> None:
    summary = probe_summary("ops")
    assert build_payload("slack", summary)["text"] == "SCEP test notification for channel ops"
    pd = build_payload("pagerduty", summary, routing_key="k")
    assert pd["payload"]["severity"] == "info" and pd["dedup_key"] == "scep-test-ops"
    assert build_payload("webhook", summary)["event"] == "test"


@pytest.mark.django_db
def test_event_summary_reads_the_run_and_ranks_findings(experiment: Any) -> None:
    run = start_run(experiment, actor=None, source="system")
    for severity, confidence, title in [
        ("low", 0.99, "minor"),
        ("critical", 0.6, "outage"),
        ("high", 0.9, "slow"),
        ("medium", 0.9, "meh"),
    ]:
        Finding.objects.create(
            run=run, kind="k", severity=severity, confidence=confidence, title=title
        )
    summary = event_summary(run, "run.finished")
    assert summary["run"]["experiment"] == "latency-demo"
    assert summary["run"]["target"] == "demo"
    assert [f["title"] for f in summary["findings"]] == ["outage", "slow", "meh"]
    assert summary["findings_total"] == 4
    assert summary["report_path"] == reverse("api:run-report", kwargs={"pk": run.pk})


def test_redact_url_keeps_only_scheme_and_host() -> None:
    assert redact_url(SECRET_URL) == "https://hooks.example.com/…/****"
    assert redact_url("http://user:pw@127.0.0.1:8080/a/b") == "http://127.0.0.1:8080/…/****"
    assert redact_url("not a url") == "****"
    assert redact_url("") == ""


def test_redact_text_masks_whole_url_path_and_keys() -> None:
    text = f"failed for url '{SECRET_URL}'; echo /services/T0001/B0002/s3cr3t-token?x=1; k=RK"
    clean = redact_text(text, [SECRET_URL, "RK"])
    assert "s3cr3t" not in clean and "T0001" not in clean and "RK" not in clean
    assert "https://hooks.example.com/…/****" in clean


def test_encryption_round_trip_and_rotation(settings: Any) -> None:
    stored = crypto.encrypt(SECRET_URL)
    assert stored.startswith(crypto.PREFIX) and "s3cr3t" not in stored
    assert stored != crypto.encrypt(SECRET_URL)  # randomised: equal URLs do not show
    assert crypto.decrypt(stored) == SECRET_URL
    old_key = settings.SECRET_KEY
    settings.SECRET_KEY = "a-brand-new-key"
    settings.SECRET_KEY_FALLBACKS = [old_key]
    assert crypto.decrypt(stored) == SECRET_URL  # old key still in the fallbacks
    settings.SECRET_KEY_FALLBACKS = []
    with pytest.raises(crypto.SecretUnavailable):
        crypto.decrypt(stored)
