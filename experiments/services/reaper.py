"""The reaper: the safety net for runs whose worker died and faults past their expiry.

It runs periodically on Celery beat. Whatever it finds, it closes through the same
idempotent revert path as everyone else.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import psutil
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from experiments.choices import EventKind, RunStatus, Verdict
from experiments.models import Run
from experiments.services.runs import add_event
from injectors.models import ActiveFault, FaultState
from injectors.services import acts_on_host, agent_is_online, request_revert
from observability import events

__all__ = ["reap", "reap_analysis", "worker_is_gone"]

log = logging.getLogger(__name__)


def worker_is_gone(worker: str, heartbeat_at, now) -> bool:
    """A worker is gone when its process is dead (same host) or its heartbeat is stale."""
    host, _, pid = worker.rpartition(":")
    if host == settings.SCEP_HOSTNAME and pid.isdigit() and not psutil.pid_exists(int(pid)):
        return True
    if heartbeat_at is None:
        return False
    return now - heartbeat_at > timedelta(seconds=settings.SCEP_RUN_HEARTBEAT_TIMEOUT_S)


def _fail(run: Run, reason: str, now: datetime, **still: Any) -> bool:
    """End ``run`` failed if it is still as ``still`` says; True if this call ended it.

    The failed state and the timeline's account of it commit together, so nobody sees
    the run failed without the reason; notifications go out after the commit.
    """
    with transaction.atomic():
        ended = Run.objects.filter(pk=run.pk, **still).update(
            status=RunStatus.FAILED,
            status_reason=reason,
            verdict=Verdict.INCONCLUSIVE,
            verdict_reason=reason,
            finished_at=now,
        )
        if ended:
            add_event(run, EventKind.ERROR, f"reaper: {reason}", phase=RunStatus.FAILED)
    if not ended:
        return False
    try:
        from notifications.services import notify_run_ended

        notify_run_ended(run)
    except Exception:  # a notification must never stop the reaper
        log.exception("reaper: notifications of run %s failed", run.pk)
    return True


def reap_analysis(now: datetime) -> dict[str, int]:
    """Runs stuck in ANALYSING: their analysis task was lost (its worker was killed, the
    broker dropped it) or no worker consumes queue ``analysis``.

    After ``SCEP_ANALYSIS_TIMEOUT_S`` the analysis is queued once more (the faults were
    reverted long ago; only the verdict is missing); after a second such wait the run
    is ended FAILED. The conditional updates make two concurrent reapers act once.
    """
    from experiments.services.conclusion import enqueue_analysis

    timeout = timedelta(seconds=settings.SCEP_ANALYSIS_TIMEOUT_S)
    counts = {"requeued": 0, "failed": 0}
    for run in Run.objects.filter(status=RunStatus.ANALYSING):
        holder = f"worker {run.analysed_by}" if run.analysed_by else "no worker"
        if run.analysis_requeued_at is None:
            queued_at = run.analysis_started_at or run.heartbeat_at
            if queued_at is None or now - queued_at <= timeout:
                continue
            requeued = Run.objects.filter(
                pk=run.pk, status=RunStatus.ANALYSING, analysis_requeued_at__isnull=True
            ).update(analysis_requeued_at=now, analysed_by="")
            if requeued:
                counts["requeued"] += 1
                add_event(
                    run,
                    EventKind.WARNING,
                    f"reaper: analysis not finished {timeout.total_seconds():.0f} s after it "
                    f"was queued (claimed by {holder}); queued again",
                    phase=RunStatus.ANALYSING,
                )
                enqueue_analysis(run)
        elif now - run.analysis_requeued_at > timeout:
            first = run.analysis_started_at or run.analysis_requeued_at
            reason = (
                f"analysis never finished: queued at {first:%H:%M:%S} UTC "
                f"and again at {run.analysis_requeued_at:%H:%M:%S} UTC, claimed by {holder} "
                "(is a worker consuming queue 'analysis'?)"
            )
            if _fail(
                run,
                reason,
                now,
                status=RunStatus.ANALYSING,
                analysis_requeued_at=run.analysis_requeued_at,
            ):
                counts["failed"] += 1
    return counts


def reap() -> dict[str, int]:
    now = timezone.now()
    counts = {"runs_failed": 0, "faults_reverted": 0, "faults_expired": 0}
    # A run in ANALYSING is no longer held by its orchestrator worker (whose task has
    # ended): it waits for its analysis task, watched by reap_analysis instead.
    running = Run.objects.exclude(
        status__in=(*RunStatus.terminal(), RunStatus.QUEUED, RunStatus.ANALYSING)
    )
    for run in running:
        if not run.worker or not worker_is_gone(run.worker, run.heartbeat_at, now):
            continue
        since = f"{run.heartbeat_at:%H:%M:%S} UTC" if run.heartbeat_at else "start"
        reason = f"worker {run.worker} lost during {run.status} (last heartbeat {since})"
        if _fail(run, reason, now, status=run.status):
            counts["runs_failed"] += 1
    analysis = reap_analysis(now)
    counts["analyses_requeued"] = analysis["requeued"]
    counts["runs_failed"] += analysis["failed"]
    for fault in ActiveFault.objects.filter(state__in=FaultState.open()).select_related("run"):
        orphaned = fault.run is not None and fault.run.status in RunStatus.terminal()
        expired = fault.expires_at <= now
        if not (orphaned or expired):
            continue
        why = "expired" if expired else f"run {fault.run_id} ended"
        if not acts_on_host(fault.injector) or agent_is_online(fault.agent):
            try:
                request_revert(fault, f"reaper: {why}")
                counts["faults_reverted"] += 1
            except Exception:  # a remote API down: try again on the next pass
                log.exception("reaper: revert of fault %s failed", fault.pk)
        elif expired:
            # The agent is down; every mechanism it hosts self-expires (proxy rules die
            # with the agent process, paused processes are resumed by their watchdog).
            ActiveFault.objects.filter(pk=fault.pk, state__in=FaultState.open()).update(
                state=FaultState.REVERTED,
                reverted_at=now,
                revert_reason=f"reaper: expired while agent {fault.agent!r} offline "
                "(self-expiring mechanism)",
            )
            counts["faults_expired"] += 1
        if fault.run_id:
            add_event(
                fault.run_id,
                EventKind.FAULT,
                f"reaper: fault {fault.pk} {why}",
            )
    if any(counts.values()):
        log.warning("reaper: %s", counts)
    try:
        from notifications.services import redispatch_stuck

        counts["notifications_requeued"] = redispatch_stuck()
    except Exception:  # notifications must never stop the reaper
        log.exception("reaper: re-queueing stuck notifications failed")
    events.reaper_pass(counts)
    return counts
