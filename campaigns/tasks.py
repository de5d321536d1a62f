"""Celery tasks of campaigns: thin wrappers that take ids and call services."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="campaigns.tasks.run_campaign", ignore_result=True)
def run_campaign(campaign_id: int) -> int | None:
    """What beat fires for a scheduled campaign: one execution (or a recorded skip)."""
    from audit.models import AuditSource
    from campaigns.choices import Trigger
    from campaigns.models import Campaign
    from campaigns.services import trigger_campaign

    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None:
        return None  # deleted since beat read its schedule
    execution = trigger_campaign(
        campaign, trigger=Trigger.SCHEDULE, actor="scheduler", source=AuditSource.SCHEDULER
    )
    return execution.pk


@shared_task(name="campaigns.tasks.advance_campaigns", ignore_result=True)
def advance_campaigns() -> int:
    """Beat tick: start the next items of running executions whose runs have ended."""
    from campaigns.services import advance_all

    return advance_all()
