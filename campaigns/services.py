"""Campaign verbs: create/update (with their beat schedule), pause/resume, trigger and
advance executions, and step through game days.

Experiment runs are only ever started through ``experiments.services.runs.start_run``,
so a campaign gets the same preflight, kill switch and audit trail as a run started by
hand. Progress is driven from the database: ``advance`` looks at the state of the runs
an execution started and launches what may start next, and the beat task
``advance_campaigns`` calls it every ``SCEP_CAMPAIGN_TICK_S``, so a worker restart loses
nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from celery.schedules import crontab as celery_crontab
from django.db import transaction
from django.utils import timezone

from audit.services import record
from campaigns.choices import ExecutionStatus, GameDayStatus, ScheduleKind, Trigger
from campaigns.models import (
    Campaign,
    CampaignItem,
    CampaignRun,
    CampaignRunItem,
    GameDay,
    GameDayNote,
)
from experiments.choices import RunStatus, Verdict
from experiments.models import Experiment, KillSwitch
from experiments.services.runs import KillSwitchEngaged, start_run

__all__ = [
    "CampaignStateError",
    "add_note",
    "advance",
    "advance_all",
    "cancel_execution",
    "create_campaign",
    "create_game_day",
    "delete_campaign",
    "finish_game_day",
    "next_step",
    "parse_crontab",
    "pause_campaign",
    "resume_campaign",
    "sync_schedule",
    "trigger_campaign",
    "update_campaign",
]

log = logging.getLogger(__name__)

RUN_TASK = "campaigns.tasks.run_campaign"
KILL_SWITCH_HOLD = "kill switch engaged: held back until released"


class CampaignStateError(Exception):
    """The campaign or game day is not in a state that allows the action (HTTP 409)."""


# --- schedule -------------------------------------------------------------------------


def parse_crontab(expression: str) -> dict[str, str]:
    """Split a five-field crontab into django-celery-beat's fields; ValueError if invalid.

    Celery's own parser checks every field, so what is accepted here is exactly what beat
    will be able to evaluate.
    """
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError("expected five fields: minute hour day-of-month month day-of-week")
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    parts = {
        "minute": minute,
        "hour": hour,
        "day_of_month": day_of_month,
        "month_of_year": month_of_year,
        "day_of_week": day_of_week,
    }
    try:
        celery_crontab(**parts)
    except Exception as exc:  # celery raises ValueError or its own ParseException
        raise ValueError(str(exc) or "invalid crontab") from None
    return parts


def sync_schedule(campaign: Campaign) -> None:
    """Make the campaign's beat entry match it: created, changed, disabled or removed.

    Saving the PeriodicTask (not a queryset update) bumps django-celery-beat's change
    marker, which is how a running beat notices the new schedule within its loop interval.
    """
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    task = campaign.periodic_task
    if campaign.schedule_kind == ScheduleKind.NONE:
        if task is not None:
            campaign.periodic_task = None
            Campaign.objects.filter(pk=campaign.pk).update(periodic_task=None)
            task.delete()
        return
    if task is None:
        task = PeriodicTask(name=f"campaign {campaign.pk}", task=RUN_TASK)
    task.args = json.dumps([campaign.pk])
    task.description = f"campaign {campaign.name}"
    task.enabled = not campaign.paused
    if campaign.schedule_kind == ScheduleKind.INTERVAL:
        task.interval, _ = IntervalSchedule.objects.get_or_create(
            every=campaign.interval_seconds, period=IntervalSchedule.SECONDS
        )
        task.crontab = None
    else:
        task.crontab, _ = CrontabSchedule.objects.get_or_create(
            **parse_crontab(campaign.crontab), timezone="UTC"
        )
        task.interval = None
    task.save()
    if campaign.periodic_task_id != task.pk:
        campaign.periodic_task = task
        Campaign.objects.filter(pk=campaign.pk).update(periodic_task=task)


# --- campaigns ------------------------------------------------------------------------

_FIELDS = (
    "name",
    "description",
    "mode",
    "concurrency",
    "schedule_kind",
    "interval_seconds",
    "crontab",
)


def _set_items(campaign: Campaign, experiments: Sequence[Experiment]) -> None:
    campaign.items.all().delete()
    CampaignItem.objects.bulk_create(
        CampaignItem(campaign=campaign, experiment=exp, position=i)
        for i, exp in enumerate(experiments, start=1)
    )


def campaign_experiments(campaign: Campaign) -> list[Experiment]:
    """The campaign's experiments in their order."""
    return [i.experiment for i in campaign.items.select_related("experiment")]


def _describe(campaign: Campaign) -> dict[str, Any]:
    return {
        **{f: getattr(campaign, f) for f in _FIELDS},
        "team": campaign.team.name,
        "paused": campaign.paused,
        "experiments": [i.experiment.name for i in campaign.items.select_related("experiment")],
    }


def foreign_experiments(team_id: int, experiments: Sequence[Experiment]) -> list[str]:
    """Names of the experiments that are not in the team: a campaign runs only its own
    team's experiments, so that acting on a campaign never acts in another team."""
    return [e.name for e in experiments if e.team_id != team_id]


def non_members(team_id: int, users: Sequence[Any]) -> list[str]:
    """Usernames of the users holding no role in the team (game-day observers must)."""
    from experiments.services.access import team_role

    return sorted(u.username for u in users if team_role(u, team_id) is None)


def _check_team(team_id: int, experiments: Sequence[Experiment]) -> None:
    foreign = foreign_experiments(team_id, experiments)
    if foreign:
        raise ValueError(f"experiments of another team: {', '.join(foreign)}")


def create_campaign(
    *,
    actor: Any,
    source: str,
    name: str,
    experiments: Sequence[Experiment],
    team: Any = None,
    **fields: Any,
) -> Campaign:
    """Create a campaign, its ordered items and its beat entry, in one transaction.

    Without ``team`` the campaign belongs to its first experiment's team; every
    experiment must belong to that team (ValueError otherwise).
    """
    team_id = getattr(team, "pk", team) or (experiments[0].team_id if experiments else None)
    if team_id is not None:
        _check_team(team_id, experiments)
        fields["team_id"] = team_id
    with transaction.atomic():
        campaign = Campaign.objects.create(
            name=name,
            created_by=actor if getattr(actor, "pk", None) else None,
            **{k: v for k, v in fields.items() if k in (*_FIELDS, "paused", "team_id")},
        )
        _set_items(campaign, experiments)
        sync_schedule(campaign)
        record(
            actor=actor,
            action="campaign.create",
            source=source,
            obj=campaign,
            changes=_describe(campaign),
        )
    return campaign


def update_campaign(
    campaign: Campaign,
    *,
    actor: Any,
    source: str,
    experiments: Sequence[Experiment] | None = None,
    **fields: Any,
) -> Campaign:
    """Change fields, team and/or the experiment list; the beat entry follows."""
    team = fields.pop("team", None)
    team_id = getattr(team, "pk", team) or campaign.team_id
    _check_team(team_id, experiments if experiments is not None else campaign_experiments(campaign))
    with transaction.atomic():
        before = _describe(campaign)
        campaign.team_id = team_id
        for key, value in fields.items():
            if key in (*_FIELDS, "paused"):
                setattr(campaign, key, value)
        campaign.save()
        if experiments is not None:
            _set_items(campaign, experiments)
        sync_schedule(campaign)
        after = _describe(campaign)
        changes = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
        record(actor=actor, action="campaign.update", source=source, obj=campaign, changes=changes)
    return campaign


def delete_campaign(campaign: Campaign, *, actor: Any, source: str) -> None:
    with transaction.atomic():
        record(actor=actor, action="campaign.delete", source=source, obj=campaign)
        task = campaign.periodic_task
        campaign.delete()
        if task is not None:
            task.delete()


def pause_campaign(campaign: Campaign, *, actor: Any, source: str) -> Campaign:
    """Stop the schedule and stop launching further items of running executions."""
    return _set_paused(campaign, True, actor=actor, source=source)


def resume_campaign(campaign: Campaign, *, actor: Any, source: str) -> Campaign:
    """Re-enable the schedule; running executions continue with their next items."""
    campaign = _set_paused(campaign, False, actor=actor, source=source)
    for execution in campaign.runs.filter(status=ExecutionStatus.RUNNING).exclude(
        trigger=Trigger.GAME_DAY
    ):
        advance(execution)
    return campaign


def _set_paused(campaign: Campaign, paused: bool, *, actor: Any, source: str) -> Campaign:
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        campaign.paused = paused
        campaign.save(update_fields=["paused", "updated_at"])
        sync_schedule(campaign)
        record(
            actor=actor,
            action="campaign.pause" if paused else "campaign.resume",
            source=source,
            obj=campaign,
        )
    return campaign


# --- executions -----------------------------------------------------------------------


def _new_execution(campaign: Campaign, trigger: str) -> CampaignRun:
    execution = CampaignRun.objects.create(campaign=campaign, trigger=trigger)
    CampaignRunItem.objects.bulk_create(
        CampaignRunItem(campaign_run=execution, position=i.position, experiment=i.experiment)
        for i in campaign.items.select_related("experiment")
    )
    return execution


def _why_not(campaign: Campaign, trigger: str) -> str:
    """Why an execution may not start now, or '' when it may."""
    if KillSwitch.get().engaged:
        return KILL_SWITCH_HOLD
    if campaign.paused:
        return "campaign paused"
    running = (
        campaign.runs.filter(status=ExecutionStatus.RUNNING)
        .exclude(trigger=Trigger.GAME_DAY)
        .first()
    )
    if running is not None:
        return f"previous execution {running.pk} still running"
    if not campaign.items.exists():
        return "campaign has no experiments"
    return ""


def trigger_campaign(campaign: Campaign, *, trigger: str, actor: Any, source: str) -> CampaignRun:
    """Start one execution of the campaign.

    A scheduled execution that may not start is recorded as ``skipped`` with the reason
    (so the kill switch visibly holds schedules back); a manual one is refused with
    CampaignStateError, because a person is there to read why.
    """
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        reason = _why_not(campaign, trigger)
        if reason and trigger != Trigger.SCHEDULE:
            raise CampaignStateError(f"campaign {campaign.name}: {reason}")
        if reason:
            execution = CampaignRun.objects.create(
                campaign=campaign,
                trigger=trigger,
                status=ExecutionStatus.SKIPPED,
                reason=reason,
                finished_at=timezone.now(),
            )
            record(
                actor=actor,
                action="campaign.skip",
                source=source,
                obj=execution,
                changes={"reason": reason},
            )
            return execution
        execution = _new_execution(campaign, trigger)
        record(
            actor=actor,
            action="campaign.start",
            source=source,
            obj=execution,
            changes={"trigger": trigger, "steps": execution.steps.count()},
        )
    advance(execution, actor=actor, source=source)
    return execution


def _start_step(step: CampaignRunItem, *, actor: Any, source: str) -> bool:
    """Start the step's experiment run; False when the kill switch refused it."""
    try:
        run = start_run(step.experiment, actor=actor, source=source)
    except KillSwitchEngaged:
        return False
    step.run = run
    step.started_at = timezone.now()
    step.save(update_fields=["run", "started_at"])
    return True


def _summary(steps: Iterable[CampaignRunItem]) -> dict[str, int]:
    counts = {"steps": 0, "not_run": 0, "passed": 0, "failed": 0, "inconclusive": 0}
    counts.update({"aborted": 0, "errored": 0})
    for step in steps:
        counts["steps"] += 1
        run = step.run
        if run is None:
            counts["not_run"] += 1
        elif run.status == RunStatus.ABORTED:
            counts["aborted"] += 1
        elif run.status == RunStatus.FAILED:
            counts["errored"] += 1
        elif run.verdict in Verdict.values:
            counts[run.verdict] += 1
    return counts


def _finish(execution: CampaignRun, steps: list[CampaignRunItem], *, reason: str = "") -> None:
    execution.status = ExecutionStatus.COMPLETED
    execution.finished_at = timezone.now()
    execution.summary = _summary(steps)
    execution.reason = reason
    execution.save(update_fields=["status", "finished_at", "summary", "reason"])
    record(
        actor="scheduler",
        action="campaign.finish",
        source="scheduler",
        obj=execution,
        changes=execution.summary,
    )


def advance(execution: CampaignRun, *, actor: Any = "scheduler", source: str = "scheduler") -> int:
    """Launch what may start now; finish the execution when every step has ended.

    Serial mode is a concurrency limit of one, taken in order: the next step starts only
    once the previous run is terminal. Paused campaigns and an engaged kill switch hold
    pending steps (the reason is shown on the execution) without losing them.
    Returns how many runs were started.
    """
    if execution.trigger == Trigger.GAME_DAY:
        return 0  # people step game days by hand
    with transaction.atomic():
        execution = (
            CampaignRun.objects.select_for_update().select_related("campaign").get(pk=execution.pk)
        )
        if execution.is_terminal:
            return 0
        steps = list(execution.steps.select_related("run", "experiment"))
        active = [s for s in steps if s.run is not None and not s.run.is_terminal]
        pending = [s for s in steps if s.run is None and not s.error]
        if not pending and not active:
            _finish(execution, steps)
            return 0
        hold = ""
        if execution.campaign.paused:
            hold = "held: campaign paused"
        elif KillSwitch.get().engaged:
            hold = f"held: {KILL_SWITCH_HOLD}"
        started = 0
        if not hold:
            for step in pending[: max(0, execution.campaign.limit - len(active))]:
                if not _start_step(step, actor=actor, source=source):
                    hold = f"held: {KILL_SWITCH_HOLD}"
                    break
                started += 1
        if execution.reason != hold:
            execution.reason = hold
            execution.save(update_fields=["reason"])
    return started


def cancel_execution(
    execution: CampaignRun, *, actor: Any, source: str, reason: str = ""
) -> CampaignRun:
    """End an execution now: its active runs are aborted (their faults reverted) and its
    pending steps never start. A stuck execution would otherwise keep its campaign's
    schedule skipping as "still running"."""
    from experiments.services.runs import RunNotAbortable, abort_run

    why = reason or "cancelled by user"
    with transaction.atomic():
        execution = CampaignRun.objects.select_for_update().get(pk=execution.pk)
        if execution.is_terminal:
            raise CampaignStateError(f"execution {execution.pk} is already {execution.status}")
        steps = list(execution.steps.select_related("run"))
        for step in steps:
            if step.run is not None and not step.run.is_terminal:
                with contextlib.suppress(RunNotAbortable):  # ended meanwhile
                    abort_run(step.run, actor=actor, source=source, reason=f"campaign: {why}")
        execution.status = ExecutionStatus.CANCELLED
        execution.finished_at = timezone.now()
        execution.reason = why
        execution.summary = _summary(execution.steps.select_related("run"))
        execution.save(update_fields=["status", "finished_at", "reason", "summary"])
        record(
            actor=actor,
            action="campaign.cancel",
            source=source,
            obj=execution,
            changes={"reason": why},
        )
    return execution


def advance_all() -> int:
    """Advance every running (non game day) execution; what the beat tick calls."""
    started = 0
    running = CampaignRun.objects.filter(status=ExecutionStatus.RUNNING).exclude(
        trigger=Trigger.GAME_DAY
    )
    for execution in running:
        try:
            started += advance(execution)
        except Exception:  # one broken execution must not stall the others
            log.exception("advancing campaign execution %s failed", execution.pk)
    return started


# --- game days ------------------------------------------------------------------------


def create_game_day(
    *, campaign: Campaign, name: str, observers: Sequence[Any], actor: Any, source: str
) -> GameDay:
    outsiders = non_members(campaign.team_id, observers)
    if outsiders:
        names = ", ".join(outsiders)
        raise ValueError(f"observers must be members of team {campaign.team.name!r}: {names}")
    with transaction.atomic():
        game_day = GameDay.objects.create(
            campaign=campaign,
            name=name,
            created_by=actor if getattr(actor, "pk", None) else None,
        )
        game_day.observers.set(observers)
        record(
            actor=actor,
            action="game_day.create",
            source=source,
            obj=game_day,
            changes={"campaign": campaign.name, "observers": [u.username for u in observers]},
        )
    return game_day


def set_observers(game_day: GameDay, observers: Sequence[Any], *, actor: Any, source: str) -> None:
    team = game_day.campaign.team
    outsiders = non_members(team.pk, observers)
    if outsiders:
        names = ", ".join(outsiders)
        raise ValueError(f"observers must be members of team {team.name!r}: {names}")
    with transaction.atomic():
        game_day.observers.set(observers)
        record(
            actor=actor,
            action="game_day.observers",
            source=source,
            obj=game_day,
            changes={"observers": [u.username for u in observers]},
        )


def next_step(game_day: GameDay, *, actor: Any, source: str) -> CampaignRunItem:
    """Start the next experiment of the game day.

    One step at a time: the people in the room watch each fault and its recovery before
    deciding to go on, so a step is refused while the previous run is still going.
    """
    with transaction.atomic():
        game_day = (
            GameDay.objects.select_for_update().select_related("campaign").get(pk=game_day.pk)
        )
        if game_day.status == GameDayStatus.FINISHED:
            raise CampaignStateError(f"game day {game_day.pk} is finished")
        if game_day.execution is None:
            if not game_day.campaign.items.exists():
                raise CampaignStateError(f"campaign {game_day.campaign.name} has no experiments")
            game_day.execution = _new_execution(game_day.campaign, Trigger.GAME_DAY)
            game_day.status = GameDayStatus.RUNNING
            game_day.started_at = timezone.now()
            game_day.save(update_fields=["execution", "status", "started_at"])
        steps = list(game_day.execution.steps.select_related("run", "experiment"))
        for step in steps:
            if step.run is not None and not step.run.is_terminal:
                raise CampaignStateError(
                    f"step {step.position} ({step.experiment.name}) is still {step.run.status}; "
                    "wait for its run to end"
                )
        pending = [s for s in steps if s.run is None]
        if not pending:
            raise CampaignStateError("no steps left: finish the game day")
        step = pending[0]
        step.run = start_run(step.experiment, actor=actor, source=source)  # may refuse
        step.started_at = timezone.now()
        step.save(update_fields=["run", "started_at"])
        record(
            actor=actor,
            action="game_day.step",
            source=source,
            obj=game_day,
            changes={
                "position": step.position,
                "experiment": step.experiment.name,
                "run": step.run.pk,
            },
        )
    return step


def add_note(game_day: GameDay, *, text: str, actor: Any, source: str) -> GameDayNote:
    with transaction.atomic():
        note = GameDayNote.objects.create(
            game_day=game_day,
            author=actor if getattr(actor, "pk", None) else None,
            text=text,
        )
        record(
            actor=actor,
            action="game_day.note",
            source=source,
            obj=game_day,
            changes={"note": note.pk},
        )
    return note


def finish_game_day(game_day: GameDay, *, actor: Any, source: str) -> GameDay:
    """Close the game day; steps never started are counted as ``not_run``."""
    with transaction.atomic():
        game_day = GameDay.objects.select_for_update().get(pk=game_day.pk)
        if game_day.status == GameDayStatus.FINISHED:
            raise CampaignStateError(f"game day {game_day.pk} is already finished")
        game_day.status = GameDayStatus.FINISHED
        game_day.finished_at = timezone.now()
        game_day.save(update_fields=["status", "finished_at"])
        execution = game_day.execution
        if execution is not None and not execution.is_terminal:
            execution.status = ExecutionStatus.COMPLETED
            execution.finished_at = game_day.finished_at
            execution.summary = _summary(execution.steps.select_related("run"))
            execution.save(update_fields=["status", "finished_at", "summary"])
        record(actor=actor, action="game_day.finish", source=source, obj=game_day)
    return game_day
