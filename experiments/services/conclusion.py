"""How a run ends: the hand-off from the orchestrator to the analysis, the analysis task's
claim, and the one function that sets a run's terminal state.

The orchestrator thread is the scarce resource (it holds a run from preflight to the end
of recovery), so once the faults are reverted and the recovery window has been measured
it stores what the run will end with (``Run.pending_outcome``), moves the run to
ANALYSING and queues ``analysis.tasks.analyse_run`` on queue ``analysis``. That task
needs nothing but the run's id: a redelivered or re-queued message finds the outcome in
the database, and the claim (``Run.analysed_by``) lets only one task finish the run.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from experiments.choices import EventKind, RunStatus, Verdict
from experiments.models import Run
from experiments.services.runs import add_event
from observability.logging import run_context

__all__ = ["claim_analysis", "conclude_run", "enqueue_analysis", "finish_run", "hand_off"]

log = logging.getLogger(__name__)


def finish_run(
    run: Run,
    status: str,
    reason: str,
    *,
    verdict: str | None = None,
    confidence: float | None = None,
    verdict_reason: str = "",
    write_report: bool = False,
) -> bool:
    """End the run unless it already ended; True if this call ended it.

    The report is written first, from the final values held in memory, so whoever sees
    the run terminal also finds its report. A terminal state set meanwhile (by the
    reaper, or by a duplicate analysis task) is never overwritten, and only the call
    that ends the run records the TRANSITION and sends the notifications.
    """
    fields: dict[str, Any] = {"status_reason": reason, "finished_at": timezone.now()}
    if verdict is not None:
        fields.update(verdict=verdict, verdict_confidence=confidence, verdict_reason=verdict_reason)
    elif status != RunStatus.COMPLETED:
        fields.update(
            verdict=Verdict.INCONCLUSIVE if status == RunStatus.ABORTED else "",
            verdict_reason=reason,
        )
    if write_report:
        _write_report(run, {"status": status, **fields})
    # The terminal state and its TRANSITION event commit together: whoever sees the run
    # ended also finds the event that says why.
    with transaction.atomic():
        updated = (
            Run.objects.filter(pk=run.pk)
            .exclude(status__in=RunStatus.terminal())
            .update(status=status, **fields)
        )
        if updated:
            add_event(run, EventKind.TRANSITION, f"{status}: {reason}", phase=status)
    if not updated:
        return False
    for key, value in {"status": status, **fields}.items():
        setattr(run, key, value)
    try:
        from notifications.services import notify_run_ended

        notify_run_ended(run)
    except Exception:  # a notification must never break a run
        log.exception("notifications of run %s failed", run.pk)
    return True


def _write_report(run: Run, final: dict[str, Any]) -> None:
    from analysis.services import write_report_files

    for key, value in final.items():
        setattr(run, key, value)
    try:
        paths = write_report_files(run, refresh=False)
        add_event(
            run,
            EventKind.INFO,
            "report written",
            phase=run.status,
            data={k: str(v) for k, v in paths.items()},
        )
    except Exception as exc:
        log.exception("report of run %s not written", run.pk)
        add_event(run, EventKind.WARNING, f"report files not written: {exc}", phase=run.status)


def hand_off(run: Run, status: str, reason: str, *, breached: bool) -> bool:
    """Store the outcome the analysis will end the run with, move the run to ANALYSING
    and queue its analysis; False if the run ended meanwhile (nothing is queued).

    ``breached``: a stop condition fired, which makes the verdict FAILED whatever the
    analysis finds (a breached stop condition is a failed hypothesis).
    """
    now = timezone.now()
    fields = {
        "status": RunStatus.ANALYSING,
        "heartbeat_at": now,
        "analysis_started_at": now,
        "pending_outcome": {"status": status, "reason": reason, "breached": breached},
        "analysed_by": "",
    }
    moved = Run.objects.filter(pk=run.pk).exclude(status__in=RunStatus.terminal()).update(**fields)
    if not moved:
        return False
    for key, value in fields.items():
        setattr(run, key, value)
    add_event(run, EventKind.TRANSITION, f"entered {RunStatus.ANALYSING}", phase=run.status)
    enqueue_analysis(run)
    return True


def enqueue_analysis(run: Run) -> None:
    """Queue the run's analysis. A broker that refuses the message leaves the run in
    ANALYSING, where the reaper queues it again after ``SCEP_ANALYSIS_TIMEOUT_S``."""
    from analysis.tasks import analyse_run

    try:
        analyse_run.delay(run.pk)
    except Exception as exc:
        log.exception("analysis of run %s not queued", run.pk)
        add_event(
            run,
            EventKind.WARNING,
            f"analysis not queued ({exc}); the reaper will queue it again",
            phase=RunStatus.ANALYSING,
        )


def claim_analysis(run_id: int, worker: str) -> Run | None:
    """Claim the analysis of a run waiting in ANALYSING; None if there is nothing to do.

    Only one task wins the claim, so a message delivered twice finishes the run once.
    A claim held by a worker process that no longer exists on this host (it was killed
    mid-analysis and its message redelivered) is taken over.
    """
    from experiments.services.reaper import worker_is_gone

    now = timezone.now()
    waiting = Run.objects.filter(pk=run_id, status=RunStatus.ANALYSING)
    claimed = waiting.filter(analysed_by="").update(analysed_by=worker, heartbeat_at=now)
    if not claimed:
        holder = waiting.values_list("analysed_by", flat=True).first()
        if holder is None or holder == worker or not worker_is_gone(holder, None, now):
            return None
        claimed = waiting.filter(analysed_by=holder).update(analysed_by=worker, heartbeat_at=now)
        if not claimed:
            return None
    return Run.objects.select_related("experiment__target").get(pk=run_id)


def conclude_run(run_id: int, worker: str | None = None) -> Run | None:
    """Analyse a run that waits in ANALYSING, write its report and end it with the
    outcome the orchestrator stored; None if another task has it or it already ended."""
    from analysis.services import analyse_run
    from experiments.services.orchestrator import worker_identity

    with run_context(run_id):
        worker = worker or worker_identity()
        run = claim_analysis(run_id, worker)
        if run is None:
            return None
        # Names the process that analysed: with dedicated analysis workers, where to look.
        add_event(
            run,
            EventKind.INFO,
            f"analysis by worker {worker}",
            phase=run.status,
            data={"worker": worker},
        )
        outcome = run.pending_outcome or {}
        if "status" not in outcome:
            finish_run(run, RunStatus.FAILED, "reached analysis without a recorded outcome")
            return run
        status, reason = outcome["status"], outcome["reason"]
        try:
            aborted = reason if status != RunStatus.COMPLETED else ""
            result = analyse_run(run, aborted_reason=aborted)
        except Exception as exc:
            log.exception("analysis of run %s failed", run.pk)
            error = f"analysis failed: {type(exc).__name__}: {exc}"
            add_event(run, EventKind.ERROR, error, phase=run.status)
            finish_run(run, RunStatus.FAILED, f"analysis failed: {exc}")
            return run
        verdict = Verdict.FAILED if outcome.get("breached") else result.verdict
        finish_run(
            run,
            status,
            reason,
            verdict=verdict,
            confidence=result.confidence,
            verdict_reason=result.reason,
            write_report=True,
        )
        return run
