"""Campaign services on the real database: beat entries follow campaigns, executions
start runs through the run service in serial or parallel order, and the kill switch and
pause hold them back. Runs are ended by hand here (no worker); tests/campaigns/
test_scheduled.py runs the same thing with real processes."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from audit.models import AuditEntry
from campaigns import services
from campaigns.choices import ExecutionStatus, Mode, ScheduleKind, Trigger
from campaigns.models import CampaignRun
from campaigns.report import campaign_report
from campaigns.tasks import run_campaign
from experiments.models import Run
from experiments.services.runs import engage_kill_switch, release_kill_switch

pytestmark = pytest.mark.django_db


def make(experiments, **fields):
    fields.setdefault("name", "nightly")
    return services.create_campaign(
        actor="test", source="system", experiments=experiments, **fields
    )


def steps_runs(execution):
    return [s.run for s in execution.steps.select_related("run").order_by("position")]


def test_an_interval_campaign_gets_an_enabled_beat_entry_that_calls_run_campaign(experiments):
    campaign = make(experiments, schedule_kind=ScheduleKind.INTERVAL, interval_seconds=30)
    task = PeriodicTask.objects.get(pk=campaign.periodic_task_id)
    assert task.task == "campaigns.tasks.run_campaign"
    assert json.loads(task.args) == [campaign.pk]
    assert task.enabled
    assert task.interval.every == 30 and task.interval.period == "seconds"
    assert task.crontab is None


def test_switching_to_crontab_rewrites_the_entry_and_removing_the_schedule_deletes_it(
    experiments,
):
    campaign = make(experiments, schedule_kind=ScheduleKind.INTERVAL, interval_seconds=30)
    task_id = campaign.periodic_task_id
    services.update_campaign(
        campaign,
        actor="test",
        source="system",
        schedule_kind=ScheduleKind.CRONTAB,
        crontab="*/5 2 * * 1-5",
    )
    task = PeriodicTask.objects.get(pk=task_id)
    assert task.interval is None
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == (
        "*/5",
        "2",
        "1-5",
    )
    services.update_campaign(campaign, actor="test", source="system", schedule_kind="none")
    assert not PeriodicTask.objects.filter(pk=task_id).exists()
    campaign.refresh_from_db()
    assert campaign.periodic_task is None


def test_a_bad_crontab_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="five fields"):
        services.parse_crontab("* * *")
    with pytest.raises(ValueError):
        services.parse_crontab("99 * * * *")


def test_pause_disables_the_beat_entry_and_resume_enables_it(experiments):
    campaign = make(experiments, schedule_kind=ScheduleKind.INTERVAL, interval_seconds=30)
    services.pause_campaign(campaign, actor="test", source="system")
    assert not PeriodicTask.objects.get(pk=campaign.periodic_task_id).enabled
    services.resume_campaign(campaign, actor="test", source="system")
    assert PeriodicTask.objects.get(pk=campaign.periodic_task_id).enabled
    actions = list(
        AuditEntry.objects.filter(object_type="campaigns.campaign")
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == ["campaign.create", "campaign.pause", "campaign.resume"]


def test_a_serial_campaign_starts_the_next_experiment_only_when_the_previous_run_ended(
    experiments, finish_run
):
    campaign = make(experiments, mode=Mode.SERIAL)
    execution = services.trigger_campaign(
        campaign, trigger=Trigger.MANUAL, actor="test", source="system"
    )
    first, second, third = steps_runs(execution)
    assert first is not None and first.experiment.name == "exp-1"
    assert second is None and third is None

    assert services.advance(execution) == 0  # first still queued
    finish_run(first)
    assert services.advance(execution) == 1
    first, second, third = steps_runs(execution)
    assert second.experiment.name == "exp-2" and third is None

    finish_run(second, verdict="failed")
    services.advance(execution)
    finish_run(steps_runs(execution)[2], status="aborted", verdict="")
    services.advance(execution)
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.COMPLETED
    assert execution.summary["passed"] == 1
    assert execution.summary["failed"] == 1
    assert execution.summary["aborted"] == 1


def test_a_parallel_campaign_keeps_at_most_its_concurrency_running(make_experiment, finish_run):
    many = [make_experiment(name=f"p-{n}") for n in range(5)]
    campaign = make(many, mode=Mode.PARALLEL, concurrency=2)
    execution = services.trigger_campaign(
        campaign, trigger=Trigger.MANUAL, actor="test", source="system"
    )
    runs = steps_runs(execution)
    assert [r is not None for r in runs] == [True, True, False, False, False]
    finish_run(runs[1])
    assert services.advance(execution) == 1
    runs = steps_runs(execution)
    assert [r is not None for r in runs] == [True, True, True, False, False]
    active = [r for r in runs if r is not None and not r.is_terminal]
    assert len(active) == 2


def test_a_scheduled_execution_during_the_kill_switch_is_skipped_with_the_reason(experiments):
    campaign = make(experiments, schedule_kind=ScheduleKind.INTERVAL, interval_seconds=5)
    engage_kill_switch(actor="test", source="system", reason="drill")
    run_campaign(campaign.pk)
    execution = CampaignRun.objects.get(campaign=campaign)
    assert execution.status == ExecutionStatus.SKIPPED
    assert "kill switch" in execution.reason
    assert not Run.objects.exists()

    release_kill_switch(actor="test", source="system")
    run_campaign(campaign.pk)
    latest = CampaignRun.objects.filter(campaign=campaign).first()
    assert latest.status == ExecutionStatus.RUNNING
    assert Run.objects.count() == 1


def test_the_kill_switch_holds_the_pending_steps_of_a_running_execution(experiments, finish_run):
    campaign = make(experiments)
    execution = services.trigger_campaign(
        campaign, trigger=Trigger.MANUAL, actor="test", source="system"
    )
    engage_kill_switch(actor="test", source="system", reason="drill")  # aborts run 1
    assert steps_runs(execution)[0].status == "aborted"
    assert services.advance(execution) == 0
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.RUNNING
    assert "kill switch" in execution.reason
    release_kill_switch(actor="test", source="system")
    assert services.advance(execution) == 1
    execution.refresh_from_db()
    assert execution.reason == ""


def test_a_paused_campaign_launches_nothing_more_and_resume_continues(experiments, finish_run):
    campaign = make(experiments)
    execution = services.trigger_campaign(
        campaign, trigger=Trigger.MANUAL, actor="test", source="system"
    )
    services.pause_campaign(campaign, actor="test", source="system")
    finish_run(steps_runs(execution)[0])
    assert services.advance(execution) == 0
    run_campaign(campaign.pk)  # a scheduled fire while paused
    skipped = CampaignRun.objects.filter(campaign=campaign, status="skipped").get()
    assert skipped.reason == "campaign paused"
    services.resume_campaign(campaign, actor="test", source="system")
    assert steps_runs(execution)[1] is not None


def test_a_manual_trigger_while_an_execution_runs_is_refused(experiments):
    campaign = make(experiments)
    services.trigger_campaign(campaign, trigger=Trigger.MANUAL, actor="test", source="system")
    with pytest.raises(services.CampaignStateError, match="still running"):
        services.trigger_campaign(campaign, trigger=Trigger.MANUAL, actor="test", source="system")


def test_the_report_gives_each_targets_scores_in_order_and_flags_the_drop(experiments, finish_run):
    campaign = make(experiments[:1])
    scores = [(90.0, 86.0, 94.0), (88.0, 84.0, 92.0), (60.0, 55.0, 66.0)]
    base = timezone.now() - timedelta(hours=3)
    for n, (score, low, high) in enumerate(scores):
        execution = services.trigger_campaign(
            campaign, trigger=Trigger.MANUAL, actor="test", source="system"
        )
        run = steps_runs(execution)[0]
        finish_run(run, score=score, score_low=low, score_high=high)
        Run.objects.filter(pk=run.pk).update(finished_at=base + timedelta(hours=n))
        services.advance(execution)

    result = campaign_report(campaign)
    (target,) = result["targets"]
    assert target["target"] == "demo"
    assert [p["score"] for p in target["points"]] == [90.0, 88.0, 60.0]
    assert [p["regression"] for p in target["points"]] == [False, False, True]
    assert target["regressions"] == [target["points"][2]["run"]]
    assert target["trend"]["n"] == 3
    assert [e["status"] for e in result["executions"]] == ["completed"] * 3
