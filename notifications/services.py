"""Announcing run outcomes: deciding what to send where, and sending it with retries.

``notify_run_ended`` is called once a run is terminal (by the orchestrator, or the
reaper when it fails a run). It only writes ``NotificationDelivery`` rows and hands
their ids to Celery, so the run's worker never waits on a slow receiver. Each delivery
is then attempted up to ``SCEP_NOTIFY_MAX_ATTEMPTS`` times with exponential backoff and
jitter; the attempt count lives in the row, so a redelivered task message does not send
twice nor retry forever.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from notifications import conf
from notifications.formats import HIGH_SEVERITIES, build_payload, event_summary, probe_summary
from notifications.models import (
    PAGERDUTY_EVENTS_URL,
    ChannelKind,
    DeliveryStatus,
    Event,
    NotificationChannel,
    NotificationDelivery,
)
from notifications.transport import post_json

__all__ = [
    "attempt_delivery",
    "backoff_delay",
    "deliver_now",
    "notify_run_ended",
    "run_event",
    "send_test",
]

log = logging.getLogger(__name__)

#: Deliveries ride the control-plane queue: short jobs, and every worker consumes it.
QUEUE = "orchestrator"

_RUN_EVENTS = {
    "completed": Event.RUN_FINISHED,
    "failed": Event.RUN_FAILED,
    "aborted": Event.RUN_ABORTED,
}


def run_event(status: str) -> str | None:
    """The event a terminal status announces (None for a status that is not terminal)."""
    return _RUN_EVENTS.get(status)


def backoff_delay(attempt: int, base: float | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    ``base · 2^(attempt-1)`` plus up to one ``base`` of jitter, so many deliveries that
    failed together (a receiver outage) do not all come back at the same instant.
    """
    base = conf.backoff_base_s() if base is None else base
    return base * 2 ** (attempt - 1) + random.uniform(0, base)


# --- creating deliveries --------------------------------------------------------------


def _subscribed(event: str) -> list[NotificationChannel]:
    # ``events`` is a JSON list; filtering in Python keeps this portable across SQLite
    # and PostgreSQL, and there are a handful of channels, not thousands.
    return [c for c in NotificationChannel.objects.filter(enabled=True) if event in c.events]


def _create(channel: NotificationChannel, event: str, run: Any, summary: dict) -> int | None:
    try:
        with transaction.atomic():
            delivery = NotificationDelivery.objects.create(
                channel=channel, event=event, run=run, payload=summary
            )
    except IntegrityError:
        return None  # already announced (worker and reaper both ended the run)
    return delivery.pk


def notify_run_ended(run: Any) -> list[int]:
    """Create and dispatch the deliveries for a run that just became terminal.

    Returns the ids of the deliveries created. Dry runs are not announced: nothing was
    injected, so there is nothing to tell anyone.
    """
    from experiments.models import Run

    run = Run.objects.select_related("experiment__target").get(pk=run.pk)
    event = run_event(run.status)
    if event is None or run.dry_run:
        return []
    created: list[int] = []
    channels = _subscribed(event)
    if channels:
        summary = event_summary(run, event)
        created += [i for c in channels if (i := _create(c, event, run, summary))]
    high = [f for f in run.findings.all() if f.severity in HIGH_SEVERITIES]
    if high:
        channels = _subscribed(Event.FINDING_HIGH)
        if channels:
            summary = event_summary(run, Event.FINDING_HIGH, high)
            created += [i for c in channels if (i := _create(c, Event.FINDING_HIGH, run, summary))]
    for delivery_id in created:
        transaction.on_commit(lambda i=delivery_id: dispatch(i))
    return created


def dispatch(delivery_id: int) -> None:
    """Hand a delivery to Celery, or send it here when ``SCEP_NOTIFY_INLINE`` is set."""
    from django.conf import settings

    if getattr(settings, "SCEP_NOTIFY_INLINE", False):
        deliver_now(delivery_id)
        return
    from notifications.tasks import deliver

    try:
        # The queue is named here rather than on the task: Celery deprecates the task
        # attribute, and the route table in settings is not this app's to edit.
        deliver.apply_async(args=[delivery_id], queue=QUEUE)
    except Exception:  # broker down: the row stays pending and visible in the API
        log.exception("notification delivery %s could not be queued", delivery_id)


def redispatch_stuck(older_than_s: float = 300.0) -> int:
    """Queue again the deliveries still pending long after they were created (the broker
    was down when they were queued, or a worker died mid-attempt); the reaper calls this.
    Attempts are counted on the row, so a delivery queued twice is still sent once."""
    from datetime import timedelta

    from django.utils import timezone

    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    stuck = list(
        NotificationDelivery.objects.filter(status="pending", updated_at__lt=cutoff).values_list(
            "pk", flat=True
        )[:100]
    )
    for delivery_id in stuck:
        dispatch(delivery_id)
    return len(stuck)


# --- sending --------------------------------------------------------------------------


def _send_once(delivery: NotificationDelivery) -> tuple[bool, int | None, str, bool]:
    channel = delivery.channel
    url = channel.url or (PAGERDUTY_EVENTS_URL if channel.kind == ChannelKind.PAGERDUTY else "")
    if not url:
        return False, None, "channel URL unavailable (not set, or cannot be decrypted)", False
    body = build_payload(channel.kind, delivery.payload, routing_key=channel.routing_key)
    outcome = post_json(url, body, timeout=conf.timeout_s(), secrets=channel.secrets())
    return outcome.ok, outcome.status_code, outcome.error, outcome.retryable


def attempt_delivery(delivery_id: int, *, max_attempts: int | None = None) -> float | None:
    """Make one attempt. Returns the delay before the next one, or None when done.

    Only a pending delivery is attempted; a delivery that is sent or failed (or gone) is
    left alone, which makes a redelivered task message harmless.
    """
    max_attempts = conf.max_attempts() if max_attempts is None else max_attempts
    claimed = NotificationDelivery.objects.filter(
        pk=delivery_id, status=DeliveryStatus.PENDING
    ).update(attempts=F("attempts") + 1, updated_at=timezone.now())
    if not claimed:
        return None
    delivery = NotificationDelivery.objects.select_related("channel").get(pk=delivery_id)
    channel = delivery.channel
    if delivery.event != Event.TEST and not channel.enabled:
        ok, code, error, retryable = False, None, "channel disabled before delivery", False
    else:
        ok, code, error, retryable = _send_once(delivery)
    fields: dict[str, Any] = {"response_status": code, "last_error": error}
    if ok:
        fields.update(status=DeliveryStatus.SENT, sent_at=timezone.now(), last_error="")
    elif not retryable or delivery.attempts >= max_attempts:
        fields.update(status=DeliveryStatus.FAILED)
    NotificationDelivery.objects.filter(pk=delivery_id).update(**fields)
    target = f"{channel.name} ({channel.masked_url})"
    if ok:
        log.info("notification %s %s sent to %s", delivery_id, delivery.event, target)
        return None
    if fields.get("status") == DeliveryStatus.FAILED:
        log.warning(
            "notification %s %s to %s failed after %d attempt(s): %s",
            delivery_id, delivery.event, target, delivery.attempts, error,
        )  # fmt: skip
        return None
    delay = backoff_delay(delivery.attempts)
    log.info(
        "notification %s to %s: attempt %d failed (%s); retry in %.2fs",
        delivery_id, target, delivery.attempts, error, delay,
    )  # fmt: skip
    return delay


def deliver_now(
    delivery_id: int,
    *,
    max_attempts: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> NotificationDelivery:
    """Attempt until sent or out of attempts, sleeping the backoff here (no broker).

    For eager mode, tests and the synchronous test button; workers use the task, which
    waits between attempts with a Celery countdown instead of a sleep.
    """
    while (delay := attempt_delivery(delivery_id, max_attempts=max_attempts)) is not None:
        sleep(delay)
    return NotificationDelivery.objects.select_related("channel").get(pk=delivery_id)


def send_test(channel: NotificationChannel) -> NotificationDelivery:
    """Send a test event now, one attempt: the admin wants to see the result at once."""
    delivery = NotificationDelivery.objects.create(
        channel=channel, event=Event.TEST, payload=probe_summary(channel.name)
    )
    return deliver_now(delivery.pk, max_attempts=1)
