"""Celery task that sends one notification delivery, retrying with backoff."""

from __future__ import annotations

import time

from celery import shared_task


@shared_task(
    bind=True,
    name="notifications.tasks.deliver",
    acks_late=True,
    ignore_result=True,
)
def deliver(self, delivery_id: int) -> None:
    """One attempt per execution; the next is scheduled with a countdown, not a sleep.

    Attempts are counted in the delivery row (not by Celery), so ``max_retries`` is
    unlimited here and the row decides when to stop. In eager mode Celery would retry
    at once, ignoring the countdown, so the backoff is slept in-process instead.
    """
    from notifications.services import attempt_delivery

    while (delay := attempt_delivery(delivery_id)) is not None:
        if not self.request.is_eager:
            raise self.retry(countdown=delay, max_retries=None)
        time.sleep(delay)
