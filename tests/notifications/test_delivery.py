"""End to end against a real local HTTP receiver: run ends → deliveries → HTTP POSTs,
with retries, backoff, redacted errors, and secrets that never leave in clear."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from analysis.models import Finding
from experiments.choices import RunStatus
from experiments.models import Run
from experiments.services.orchestrator import Orchestrator
from experiments.services.reaper import reap
from experiments.services.runs import start_run
from notifications.models import NotificationChannel, NotificationDelivery
from notifications.services import deliver_now, notify_run_ended
from notifications.tasks import deliver
from tests.notifications.conftest import Receiver

pytestmark = pytest.mark.django_db

SECRET_PATH = "/hook/T0001/B0002/s3cr3t-token"


def channel(name: str, kind: str, url: str, **fields: Any) -> NotificationChannel:
    fields.setdefault("events", ["run.finished", "run.failed", "run.aborted"])
    return NotificationChannel.objects.create(name=name, kind=kind, url=url, **fields)


@pytest.fixture
def run(experiment: Any) -> Run:
    run = start_run(experiment, actor=None, source="system")
    Run.objects.filter(pk=run.pk).update(score=72.5, score_low=65.0, score_high=80.0)
    run.refresh_from_db()
    return run


def finish(run: Run, status: str, **kwargs: Any) -> None:
    """End the run the way the worker does, through ``Orchestrator.finish``."""
    Orchestrator(run, "test-host:1").finish(status, kwargs.pop("reason", "done"), **kwargs)


def test_a_finished_run_notifies_webhook_slack_and_pagerduty(
    fast_delivery: Any, receiver: Receiver, run: Run, django_capture_on_commit_callbacks: Any
) -> None:
    channel("hook", "webhook", receiver.url("/webhook"), events=["run.finished"])
    channel("chat", "slack", receiver.url("/slack"), events=["run.finished", "finding.high"])
    channel("pager", "pagerduty", receiver.url("/pd"), routing_key="RK-123",
            events=["finding.high"])  # fmt: skip
    channel("off", "webhook", receiver.url("/off"), enabled=False)
    Finding.objects.create(
        run=run, kind="degradation", severity="critical", confidence=0.97,
        title="p95 latency up 4x", metric="latency",
    )  # fmt: skip

    with django_capture_on_commit_callbacks(execute=True):
        finish(run, RunStatus.COMPLETED, verdict="failed", confidence=0.91)

    assert sorted(r["path"] for r in receiver.requests) == ["/pd", "/slack", "/slack", "/webhook"]
    (hook,) = receiver.bodies("/webhook")
    assert hook["event"] == "run.finished"
    assert hook["run"]["id"] == run.pk
    assert hook["run"]["experiment"] == "latency-demo" and hook["run"]["target"] == "demo"
    assert hook["run"]["status"] == "completed" and hook["run"]["verdict"] == "failed"
    assert hook["run"]["confidence"] == 0.91
    assert hook["run"]["score"] == 72.5 and hook["run"]["score_interval"] == [65.0, 80.0]
    assert hook["findings"][0]["title"] == "p95 latency up 4x"
    assert hook["report_path"] == f"/api/v1/runs/{run.pk}/report/"

    slack = {b["text"].split(":", 1)[0]: b for b in receiver.bodies("/slack")}
    assert all(set(b) == {"text", "blocks"} for b in slack.values())
    assert any("critical finding" in b["text"] for b in slack.values())

    (pd,) = receiver.bodies("/pd")
    assert pd["routing_key"] == "RK-123" and pd["event_action"] == "trigger"
    assert pd["dedup_key"] == f"scep-run-{run.pk}"
    assert pd["payload"]["severity"] == "critical"
    assert pd["payload"]["custom_details"]["event"] == "finding.high"

    deliveries = NotificationDelivery.objects.filter(run=run)
    assert deliveries.count() == 4
    assert set(deliveries.values_list("status", flat=True)) == {"sent"}
    assert receiver.requests[0]["headers"]["Content-Type"] == "application/json"


def test_announcing_twice_sends_once_and_dry_runs_are_silent(
    fast_delivery: Any, receiver: Receiver, experiment: Any, run: Run
) -> None:
    channel("hook", "webhook", receiver.url("/webhook"))
    Run.objects.filter(pk=run.pk).update(status=RunStatus.ABORTED)
    assert len(notify_run_ended(run)) == 1
    assert notify_run_ended(run) == []  # the worker and the reaper both ended it
    dry = start_run(experiment, actor=None, source="system", dry_run=True)
    Run.objects.filter(pk=dry.pk).update(status=RunStatus.COMPLETED)
    assert notify_run_ended(dry) == []


def test_the_reaper_failing_a_run_notifies(
    fast_delivery: Any, receiver: Receiver, run: Run, django_capture_on_commit_callbacks: Any
) -> None:
    channel("hook", "webhook", receiver.url("/webhook"), events=["run.failed"])
    Run.objects.filter(pk=run.pk).update(
        status=RunStatus.DURING,
        worker="some-other-host:4242",
        heartbeat_at=timezone.now() - timedelta(hours=1),
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert reap()["runs_failed"] == 1
    (body,) = receiver.bodies("/webhook")
    assert body["event"] == "run.failed"
    assert body["run"]["status"] == "failed" and "worker" in body["run"]["status_reason"]


def test_a_notification_failure_never_breaks_the_run(
    monkeypatch: pytest.MonkeyPatch, run: Run
) -> None:
    def explode(run: Any) -> None:
        raise RuntimeError("receiver config exploded")

    monkeypatch.setattr("notifications.services.notify_run_ended", explode)
    finish(run, RunStatus.COMPLETED, verdict="passed", confidence=0.9)
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED


def test_retries_with_backoff_then_delivers(
    fast_delivery: Any, receiver: Receiver, run: Run
) -> None:
    receiver.statuses = [500, 500, 200]
    hook = channel("hook", "webhook", receiver.url(SECRET_PATH))
    delivery = NotificationDelivery.objects.create(
        channel=hook, event="run.finished", run=run, payload={"event": "run.finished"}
    )
    started = time.monotonic()
    deliver.apply(args=[delivery.pk])  # the Celery task itself, executed eagerly
    elapsed = time.monotonic() - started

    delivery.refresh_from_db()
    assert delivery.status == "sent" and delivery.attempts == 3
    assert delivery.sent_at is not None and delivery.last_error == ""
    assert len(receiver.requests) == 3
    assert elapsed >= 0.02 + 0.04  # base · 2^0 + base · 2^1, jitter only adds


def test_backoff_grows_between_attempts(fast_delivery: Any, receiver: Receiver, run: Run) -> None:
    receiver.statuses = [503]
    hook = channel("hook", "webhook", receiver.url("/x"))
    delivery = NotificationDelivery.objects.create(channel=hook, event="run.finished", run=run)
    sleeps: list[float] = []
    deliver_now(delivery.pk, max_attempts=4, sleep=sleeps.append)
    assert len(sleeps) == 3
    assert 0.02 <= sleeps[0] <= 0.04 <= sleeps[1] <= 0.06 and 0.08 <= sleeps[2] <= 0.1


def test_a_receiver_that_always_fails_gives_up_with_a_redacted_error(
    fast_delivery: Any, receiver: Receiver, run: Run, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.statuses = [500]
    hook = channel("hook", "webhook", receiver.url(SECRET_PATH))
    delivery = NotificationDelivery.objects.create(channel=hook, event="run.finished", run=run)
    with caplog.at_level(logging.DEBUG, logger="notifications"):
        delivery = deliver_now(delivery.pk)

    assert delivery.status == "failed" and delivery.attempts == 3
    assert len(receiver.requests) == 3
    assert delivery.response_status == 500
    assert delivery.last_error.startswith("HTTP 500")
    assert "s3cr3t" not in delivery.last_error and "T0001" not in delivery.last_error
    assert "****" in delivery.last_error  # the echoed path was masked, not dropped
    assert caplog.records and "s3cr3t" not in caplog.text


def test_client_errors_are_not_retried(fast_delivery: Any, receiver: Receiver, run: Run) -> None:
    receiver.statuses = [404]
    hook = channel("hook", "webhook", receiver.url(SECRET_PATH))
    delivery = NotificationDelivery.objects.create(channel=hook, event="run.finished", run=run)
    delivery = deliver_now(delivery.pk)
    assert delivery.status == "failed" and delivery.attempts == 1


def test_an_unreachable_receiver_is_retried_and_redacted(fast_delivery: Any, run: Run) -> None:
    hook = channel("hook", "webhook", "http://127.0.0.1:9" + SECRET_PATH)
    delivery = NotificationDelivery.objects.create(channel=hook, event="run.finished", run=run)
    delivery = deliver_now(delivery.pk)
    assert delivery.status == "failed" and delivery.attempts == 3
    assert "Connect" in delivery.last_error and "s3cr3t" not in delivery.last_error


# --- secrets at rest and in the API ---------------------------------------------------


def test_the_stored_column_is_not_the_clear_url(receiver: Receiver) -> None:
    url = receiver.url(SECRET_PATH)
    hook = channel("hook", "pagerduty", url, routing_key="RK-s3cr3t")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT url, routing_key FROM notifications_notificationchannel WHERE id = %s",
            [hook.pk],
        )
        stored_url, stored_key = cursor.fetchone()
    assert stored_url.startswith("fernet1:") and stored_key.startswith("fernet1:")
    assert "s3cr3t" not in stored_url + stored_key and "127.0.0.1" not in stored_url
    assert NotificationChannel.objects.get(pk=hook.pk).url == url  # decrypts on read


def test_the_api_never_returns_the_url(
    admin_client: Any, operator_client: Any, viewer_client: Any, receiver: Receiver
) -> None:
    url = receiver.url(SECRET_PATH)
    created = admin_client.post(
        "/api/v1/notification-channels/",
        {"name": "ops", "kind": "slack", "url": url, "events": ["run.failed"]},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert "s3cr3t" not in created.content.decode()
    assert created.json()["url_masked"] == f"{receiver.base_url}/…/****"
    pk = created.json()["id"]

    for client in (admin_client, operator_client):
        for path in ("/api/v1/notification-channels/", f"/api/v1/notification-channels/{pk}/"):
            response = client.get(path)
            assert response.status_code == 200
            assert "s3cr3t" not in response.content.decode()
            assert "url" not in (response.json().get("results") or [response.json()])[0]
    assert viewer_client.get("/api/v1/notification-channels/").status_code == 403

    # An update without a URL keeps the stored one.
    patched = admin_client.patch(
        f"/api/v1/notification-channels/{pk}/", {"enabled": False}, format="json"
    )
    assert patched.status_code == 200
    assert NotificationChannel.objects.get(pk=pk).url == url

    # Nor does the audit trail hold it.
    from audit.models import AuditEntry

    assert AuditEntry.objects.filter(action="notification_channel.create").exists()
    assert all("s3cr3t" not in str(e.changes) for e in AuditEntry.objects.all())


def test_api_validates_channels(admin_client: Any) -> None:
    bad_scheme = admin_client.post(
        "/api/v1/notification-channels/",
        {"name": "x", "kind": "webhook", "url": "ftp://secret-host/s3cr3t"},
        format="json",
    )
    assert bad_scheme.status_code == 400 and "s3cr3t" not in bad_scheme.content.decode()
    no_key = admin_client.post(
        "/api/v1/notification-channels/", {"name": "pd", "kind": "pagerduty"}, format="json"
    )
    assert no_key.status_code == 400 and "routing_key" in no_key.json()["errors"]
    unknown_event = admin_client.post(
        "/api/v1/notification-channels/",
        {"name": "y", "kind": "webhook", "url": "https://h.example.com/a", "events": ["nope"]},
        format="json",
    )
    assert unknown_event.status_code == 400


def test_the_test_button_sends_now_and_reports_the_outcome(
    admin_client: Any, operator_client: Any, receiver: Receiver
) -> None:
    hook = channel("hook", "webhook", receiver.url(SECRET_PATH))
    ok = admin_client.post(f"/api/v1/notification-channels/{hook.pk}/test/", {}, format="json")
    assert ok.status_code == 200 and ok.json()["status"] == "sent"
    assert receiver.bodies()[0]["event"] == "test"

    receiver.statuses = [200, 500]
    failed = admin_client.post(f"/api/v1/notification-channels/{hook.pk}/test/", {}, format="json")
    assert failed.status_code == 200
    body = failed.json()
    assert body["status"] == "failed" and body["attempts"] == 1
    assert "s3cr3t" not in failed.content.decode()

    deliveries = operator_client.get(f"/api/v1/notification-deliveries/?channel={hook.pk}")
    assert deliveries.status_code == 200 and deliveries.json()["count"] == 2
    assert "s3cr3t" not in deliveries.content.decode()
    assert operator_client.get("/api/v1/notification-deliveries/?status=bogus").status_code == 400


def test_the_admin_masks_the_url(client: Any, django_user_model: Any) -> None:
    boss = django_user_model.objects.create_superuser("boss", "boss@example.com", None)
    client.force_login(boss)
    hook = channel("hook", "slack", "https://hooks.example.com" + SECRET_PATH)
    listing = client.get("/admin/notifications/notificationchannel/")
    page = client.get(f"/admin/notifications/notificationchannel/{hook.pk}/change/")
    assert listing.status_code == page.status_code == 200
    for response in (listing, page):
        html = response.content.decode()
        assert "s3cr3t" not in html and "https://hooks.example.com/…/****" in html


def test_aborting_a_queued_run_notifies_though_no_worker_saw_it(
    fast_delivery: Any, receiver: Receiver, run: Run, django_capture_on_commit_callbacks: Any
) -> None:
    from experiments.services.runs import abort_run

    channel("hook", "webhook", receiver.url("/webhook"), events=["run.aborted"])
    with django_capture_on_commit_callbacks(execute=True):
        abort_run(run, actor=None, source="system", reason="changed my mind")
    (body,) = receiver.bodies("/webhook")
    assert body["event"] == "run.aborted" and body["run"]["status"] == "aborted"


def test_the_reaper_queues_again_a_delivery_left_pending(
    fast_delivery: Any, receiver: Receiver, run: Run
) -> None:
    hook = channel("hook", "webhook", receiver.url("/webhook"), events=["run.failed"])
    stuck = NotificationDelivery.objects.create(
        channel=hook, event="run.failed", run=run, payload={"event": "run.failed"}
    )
    NotificationDelivery.objects.filter(pk=stuck.pk).update(
        updated_at=timezone.now() - timedelta(minutes=10)
    )
    assert reap()["notifications_requeued"] == 1
    stuck.refresh_from_db()
    assert stuck.status == "sent" and receiver.bodies("/webhook")
