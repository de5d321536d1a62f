"""Starting and aborting runs, the kill switch, and the run timeline."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.services import record
from experiments.choices import EventKind, RunStatus
from experiments.models import Experiment, KillSwitch, Run, RunEvent

__all__ = [
    "ApprovalRefused",
    "KillSwitchEngaged",
    "RunNotAbortable",
    "RunNotAwaitingApproval",
    "abort_run",
    "add_event",
    "approve_run",
    "engage_kill_switch",
    "release_kill_switch",
    "start_run",
]


log = logging.getLogger(__name__)


class KillSwitchEngaged(Exception):
    """New runs are refused while the kill switch is engaged."""


class RunNotAbortable(Exception):
    """The run already reached a terminal state."""


class RunNotAwaitingApproval(Exception):
    """Only a run in ``awaiting_approval`` can be approved."""


class ApprovalRefused(Exception):
    """This user may not approve this run (it is their own, or they lack the role)."""


def add_event(
    run: Run | int,
    kind: str,
    message: str,
    *,
    phase: str | None = None,
    data: dict[str, Any] | None = None,
) -> RunEvent:
    run_id = run if isinstance(run, int) else run.pk
    if phase is None:
        phase = Run.objects.values_list("status", flat=True).get(pk=run_id)
    return RunEvent.objects.create(
        run_id=run_id, kind=kind, phase=phase, message=message, data=data or {}
    )


def start_run(experiment: Experiment, *, actor: Any, source: str, dry_run: bool = False) -> Run:
    """Create a queued run of the experiment's current version and enqueue it after commit.

    Where the environment's policy requires approval the run waits in
    ``awaiting_approval`` instead, and is enqueued by :func:`approve_run`.
    """
    from experiments import tasks
    from governance.services import policy_for, requires_approval

    with transaction.atomic():
        if KillSwitch.get().engaged:
            raise KillSwitchEngaged(
                "the kill switch is engaged: new runs are refused until released"
            )
        environment = experiment.target.environment
        held = requires_approval(environment, dry_run=dry_run)
        run = Run.objects.create(
            experiment=experiment,
            experiment_version=experiment.version,
            spec=experiment.spec,
            dry_run=dry_run,
            started_by=actor if getattr(actor, "pk", None) else None,
            status=RunStatus.AWAITING_APPROVAL if held else RunStatus.QUEUED,
        )
        if held:
            policy = policy_for(environment)
            add_event(
                run,
                EventKind.TRANSITION,
                f"awaiting approval: policy {policy.name!r} ({environment}) requires a "
                "second user with the approver role",
                phase=RunStatus.AWAITING_APPROVAL,
            )
        else:
            add_event(run, EventKind.TRANSITION, "run queued", phase=RunStatus.QUEUED)
        record(
            actor=actor,
            action="run.start",
            source=source,
            obj=run,
            changes={
                "experiment": experiment.name,
                "version": experiment.version,
                "dry_run": dry_run,
                "status": run.status,
            },
        )
        if not held:
            transaction.on_commit(lambda: tasks.execute_run.delay(run.pk))
    return run


def approve_run(run: Run, *, actor: Any, source: str) -> Run:
    """Approve a run held by its environment's policy and enqueue it.

    The approver must hold the approver role (or admin) and must not be the user who
    requested the run: the point is a second pair of eyes.
    """
    from experiments import tasks
    from experiments.services.access import team_role
    from scep.permissions import APPROVER, ROLES

    held = team_role(actor, run.experiment.team_id)
    if held is None or ROLES.index(held) < ROLES.index(APPROVER):
        raise ApprovalRefused("approving a run needs the 'approver' role in its team")
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        if run.status != RunStatus.AWAITING_APPROVAL:
            raise RunNotAwaitingApproval(f"run {run.pk} is {run.status}, not awaiting approval")
        if run.started_by_id is not None and run.started_by_id == getattr(actor, "pk", None):
            raise ApprovalRefused("the requester of a run cannot approve it; ask a second user")
        run.status = RunStatus.QUEUED
        run.approved_by = actor
        run.approved_at = timezone.now()
        run.save(update_fields=["status", "approved_by", "approved_at"])
        add_event(
            run,
            EventKind.TRANSITION,
            f"approved by {actor.get_username()}; run queued",
            phase=RunStatus.QUEUED,
        )
        record(
            actor=actor,
            action="run.approve",
            source=source,
            obj=run,
            changes={"status": {"before": RunStatus.AWAITING_APPROVAL, "after": run.status}},
        )
        transaction.on_commit(lambda: tasks.execute_run.delay(run.pk))
    return run


def abort_run(run: Run, *, actor: Any, source: str, reason: str = "") -> Run:
    """Ask the run's worker to stop; it reverts within one tick (SCEP_TICK_S).

    A queued run that no worker has claimed yet is ended here directly.
    """
    why = reason or "aborted by user"
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        if run.is_terminal:
            raise RunNotAbortable(f"run {run.pk} is already {run.status}")
        run.abort_requested_at = timezone.now()
        run.abort_reason = why
        fields = ["abort_requested_at", "abort_reason"]
        if run.status in (RunStatus.QUEUED, RunStatus.AWAITING_APPROVAL):
            run.status = RunStatus.ABORTED
            run.status_reason = why
            run.finished_at = timezone.now()
            fields += ["status", "status_reason", "finished_at"]
        run.save(update_fields=fields)
        add_event(run, EventKind.ABORT, f"abort requested: {why}", data={"source": source})
        record(actor=actor, action="run.abort", source=source, obj=run, changes={"reason": why})
        if run.status == RunStatus.ABORTED:  # ended here: no worker will announce it
            transaction.on_commit(lambda: _notify_ended(run))
    return run


def _notify_ended(run: Run) -> None:
    try:
        from notifications.services import notify_run_ended

        notify_run_ended(run)
    except Exception:  # a notification must never break an abort
        log.exception("notifications of run %s failed", run.pk)


def engage_kill_switch(*, actor: Any, source: str, reason: str = "") -> dict[str, int]:
    """Abort every active run, revert every open fault now, refuse new runs.

    Faults are reverted from here as well as by their workers: a run whose worker is
    gone must not keep its fault until the reaper passes.
    """
    from injectors.models import ActiveFault, FaultState
    from injectors.services import revert_open_faults

    # Taken first: the runs' own workers start reverting as soon as the switch is seen,
    # and the count must not depend on who wins that race.
    open_faults = list(ActiveFault.objects.filter(state__in=FaultState.open()))
    with transaction.atomic():
        switch = KillSwitch.objects.select_for_update().get_or_create(pk=1)[0]
        switch.engaged = True
        switch.engaged_at = timezone.now()
        switch.engaged_by = getattr(actor, "username", "") or str(actor or "system")
        switch.reason = reason
        switch.save()
        record(
            actor=actor,
            action="kill_switch.engage",
            source=source,
            obj=switch,
            changes={"reason": reason},
        )
    aborted = 0
    for run in Run.objects.filter(status__in=RunStatus.active()):
        try:
            abort_run(run, actor=actor, source=source, reason=f"kill switch: {reason}".strip(": "))
            aborted += 1
        except RunNotAbortable:
            pass
    reverted = revert_open_faults(reason="kill switch", faults=open_faults)
    return {"aborted_runs": aborted, "reverted_faults": reverted}


def release_kill_switch(*, actor: Any, source: str) -> None:
    with transaction.atomic():
        switch = KillSwitch.objects.select_for_update().get_or_create(pk=1)[0]
        switch.engaged = False
        switch.save()
        record(actor=actor, action="kill_switch.release", source=source, obj=switch)
