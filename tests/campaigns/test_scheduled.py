"""A scheduled campaign runs by itself: a real ``scep worker --beat`` (beat with the
database scheduler + orchestrator worker) and a real agent in front of the demo service,
no manual trigger. The kill switch holds scheduled executions back; pause stops them."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from campaigns import services
from campaigns.choices import ExecutionStatus, ScheduleKind, Trigger
from campaigns.models import CampaignRun
from experiments.choices import RunStatus
from experiments.models import Run
from experiments.services.catalog import create_experiment
from experiments.services.runs import engage_kill_switch, release_kill_switch
from tests.support.processes import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def short_campaign(stack, interval: int):
    spec = stack.spec(name="campaign-latency", baseline=2, duration=2, recovery=1)
    experiment = create_experiment(spec, actor="test", source="system")
    return services.create_campaign(
        actor="test",
        source="system",
        name="every-few-seconds",
        experiments=[experiment],
        schedule_kind=ScheduleKind.INTERVAL,
        interval_seconds=interval,
    )


def test_a_scheduled_campaign_runs_by_itself_on_beat_to_a_terminal_run(stack, start_worker):
    campaign = short_campaign(stack, interval=3)
    start_worker("--beat", SCEP_CAMPAIGN_TICK_S="1")

    def completed_execution():
        return CampaignRun.objects.filter(
            campaign=campaign, status=ExecutionStatus.COMPLETED
        ).first()

    execution = wait_until(completed_execution, 150, "a scheduled execution to complete", 0.5)
    assert execution.trigger == Trigger.SCHEDULE
    (step,) = execution.steps.select_related("run")
    assert step.run.status == RunStatus.COMPLETED, step.run.status_reason
    assert step.run.verdict  # judged by the analysis
    assert execution.summary["steps"] == 1 and execution.summary["not_run"] == 0
    started = AuditEntry.objects.get(action="campaign.start", object_id=str(execution.pk))
    assert started.source == "scheduler"
    assert AuditEntry.objects.filter(action="run.start", source="scheduler").exists()


def test_the_kill_switch_holds_scheduled_executions_back_and_pause_stops_them(stack, start_worker):
    engage_kill_switch(actor="test", source="system", reason="freeze")
    campaign = short_campaign(stack, interval=2)
    start_worker("--beat", SCEP_CAMPAIGN_TICK_S="1")

    skipped = wait_until(
        lambda: CampaignRun.objects.filter(campaign=campaign, status="skipped").first(),
        60,
        "a scheduled execution held back by the kill switch",
        0.5,
    )
    assert "kill switch" in skipped.reason
    assert skipped.trigger == Trigger.SCHEDULE
    assert not Run.objects.exists()

    release_kill_switch(actor="test", source="system")
    # The execution is committed first and its step's run started just after, so wait
    # for the run itself rather than the execution row.
    running = wait_until(
        lambda: (
            CampaignRun.objects.filter(campaign=campaign, steps__run__isnull=False)
            .exclude(status=ExecutionStatus.SKIPPED)
            .first()
        ),
        60,
        "a scheduled execution to start its run after release",
        0.5,
    )
    assert running.trigger == Trigger.SCHEDULE
    assert running.steps.get().run.experiment_id == campaign.items.get().experiment_id

    services.pause_campaign(campaign, actor="test", source="system")
    paused_at = timezone.now()
    runs_before = Run.objects.count()
    time.sleep(8)  # beat re-reads its schedule within its 5 s loop
    settled = CampaignRun.objects.filter(campaign=campaign).count()
    time.sleep(8)
    assert CampaignRun.objects.filter(campaign=campaign).count() == settled
    assert Run.objects.count() == runs_before
    late = CampaignRun.objects.filter(campaign=campaign, created_at__gt=paused_at)
    assert all(e.status == ExecutionStatus.SKIPPED for e in late)
