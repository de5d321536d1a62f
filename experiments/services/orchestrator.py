"""The run state machine: preflight → baseline → inject → during → revert → cleanup →
recovery, then the hand-off to the analysis (``experiments.services.conclusion``).

One Celery task per run calls ``execute_run``; the analysis and the run's end happen in
a second task, on queue ``analysis``, so this thread is free once recovery is measured.

The revert sits in a ``finally`` block: whatever happens after the ledger row is
written — abort, stop condition, kill switch, an exception — the fault is reverted
before the run moves on. The worker checks for aborts every ``SCEP_TICK_S`` so an abort
is acted on well within a second.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from datetime import timedelta
from typing import Any

import httpx
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from experiments.choices import EventKind, RunStatus
from experiments.models import KillSwitch, Run, Target
from experiments.services.conclusion import finish_run, hand_off
from experiments.services.preflight import PreflightError, preflight
from experiments.services.runs import add_event
from experiments.spec import ExperimentSpec
from injectors.base import InjectionContext, InjectionError
from injectors.models import ActiveFault, FaultState
from injectors.registry import get_injector
from injectors.services import inject_fault, open_fault, revert_fault
from observability.logging import run_context

__all__ = ["execute_run", "worker_identity"]

log = logging.getLogger(__name__)


def worker_identity() -> str:
    return f"{settings.SCEP_HOSTNAME}:{os.getpid()}"


#: How long a run rides out a database outage (a restart, a failover) before giving up.
DB_OUTAGE_TOLERANCE_S = 60.0


def db_retry(fn, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``, retrying through a database outage.

    A run that holds a fault must outlive a database restart: without this, the first
    query after the restart raises on the dead connection, every later one too, and the
    run can neither revert through the ledger nor record how it ended. The broken
    connection is dropped so the next attempt reconnects. ``fn`` must be idempotent.
    """
    deadline = time.monotonic() + DB_OUTAGE_TOLERANCE_S
    while True:
        try:
            return fn(*args, **kwargs)
        except (OperationalError, InterfaceError) as exc:
            if connection.in_atomic_block or time.monotonic() >= deadline:
                raise
            log.warning("database unavailable, retrying: %s", exc)
            connection.close()
            time.sleep(0.5)


class RunInterrupted(Exception):
    """The run must stop early; ``status`` is the terminal status it ends with."""

    def __init__(self, reason: str, status: str = RunStatus.ABORTED, *, keep_recovery=False):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.keep_recovery = keep_recovery


class Orchestrator:
    def __init__(self, run: Run, worker: str):
        self.run = run
        self.worker = worker
        self.spec = ExperimentSpec.model_validate(run.spec)
        self.target: Target = run.experiment.target
        self.sampler = None
        self.fault: ActiveFault | None = None
        self.interruption: RunInterrupted | None = None
        self.error: str = ""
        self._last_heartbeat = 0.0
        self.live: dict[int, list] = {}  # stop condition index -> [detector, samples seen]
        self.breached_at: float | None = None

    # -- bookkeeping ------------------------------------------------------------------
    def transition(self, status: str, message: str | None = None, **stamps: Any) -> None:
        fields = {"status": status, "heartbeat_at": timezone.now(), **stamps}
        db_retry(Run.objects.filter(pk=self.run.pk).update, **fields)
        for key, value in fields.items():
            setattr(self.run, key, value)
        add_event(self.run, EventKind.TRANSITION, message or f"entered {status}", phase=status)

    def event(self, kind: str, message: str, **data: Any) -> None:
        add_event(self.run, kind, message, phase=self.run.status, data=data)

    def check(self) -> None:
        """Heartbeat, then raise RunInterrupted on abort, kill switch, external end or a
        fault that ended before its time."""
        db_retry(self._check)

    def _check(self) -> None:
        now = time.monotonic()
        beat = now - self._last_heartbeat >= 1.0
        if beat:
            Run.objects.filter(pk=self.run.pk).update(heartbeat_at=timezone.now())
            self._last_heartbeat = now
        row = Run.objects.values("status", "abort_requested_at", "abort_reason").get(pk=self.run.pk)
        if row["status"] in RunStatus.terminal():
            raise RunInterrupted(f"run was ended elsewhere ({row['status']})", row["status"])
        if row["abort_requested_at"] is not None:
            raise RunInterrupted(row["abort_reason"] or "aborted by user")
        if KillSwitch.objects.filter(pk=1, engaged=True).exists():
            raise RunInterrupted("kill switch engaged")
        if beat and self.run.status == RunStatus.DURING and self.fault is not None:
            self._check_fault_in_place()

    def _check_fault_in_place(self) -> None:
        """A fault closed by someone else (its agent restarted, it expired, the reaper)
        means the run no longer measures what it says: end it failed, with the reason."""
        fault = ActiveFault.objects.values("state", "revert_reason").get(pk=self.fault.pk)
        if fault["state"] not in FaultState.open():
            why = fault["revert_reason"] or fault["state"]
            raise RunInterrupted(
                f"fault {self.fault.pk} ended before its duration elapsed: {why}",
                RunStatus.FAILED,
            )

    def wait(self, seconds: float, *, stop_conditions: bool = False) -> None:
        deadline = time.monotonic() + seconds
        next_check = time.monotonic() + self.spec.interval
        tick = settings.SCEP_TICK_S
        while (remaining := deadline - time.monotonic()) > 0:
            self.check()
            if stop_conditions and time.monotonic() >= next_check:
                self.check_stop_conditions()
                next_check += self.spec.interval
            time.sleep(min(tick, remaining))

    def check_stop_conditions(self) -> None:
        from analysis.core.rules import evaluate_window_rule

        now = time.time()
        for i, rule in enumerate(self.spec.stop_conditions):
            ts, vs = self.sampler.window("during", rule.metric)
            if rule.detector == "threshold":
                _, base = self.sampler.window("baseline", rule.metric)
                window = rule.window or max(5 * self.spec.interval, 5.0)
                result = evaluate_window_rule(rule.model_dump(), ts, vs, base, now, window)
            else:
                result = self.feed_live_detector(i, rule, ts, vs)
            if result and result.get("passed") is True:
                # A stop condition states when to stop: it fires when its comparison holds.
                message = f"stop condition breached: {rule.name or rule.describe()}"
                self.breached_at = time.monotonic()
                self.event(EventKind.STOP_CONDITION, message, evidence=result)
                raise RunInterrupted(message, RunStatus.ABORTED, keep_recovery=True)

    def feed_live_detector(self, i: int, rule, ts: list[float], vs: list[float]):
        """Statistical stop conditions see each during-phase sample once, in order."""
        from analysis.core.live import make_live_detector

        if i not in self.live:
            better = next(m.better for m in self.spec.metrics if m.name == rule.metric)
            detector = make_live_detector(rule.model_dump(), better)
            base_ts, base = self.sampler.window("baseline", rule.metric)
            if not detector.prime(base_ts, base):
                self.event(
                    EventKind.WARNING,
                    f"stop condition {rule.name or rule.describe()} disabled: "
                    f"only {len(base)} baseline samples",
                )
                detector = None
            self.live[i] = [detector, 0]
        detector, seen = self.live[i]
        if detector is None:
            return None
        breach = None
        for t, v in zip(ts[seen:], vs[seen:], strict=True):
            breach = detector.update(t, v) or breach
        self.live[i][1] = len(ts)
        return breach

    # -- phases -----------------------------------------------------------------------
    def execute(self) -> None:
        try:
            self.transition(RunStatus.PREFLIGHT, "preflight checks")
            preflight(self.run, self.spec, self.target)
            if self.run.dry_run:
                self.dry_run()
                return
            self.collect_and_inject()
        except PreflightError as exc:
            self.finish(RunStatus.FAILED, f"preflight refused: {exc}")
            return
        except RunInterrupted as exc:
            self.interruption = exc
        except Exception as exc:
            log.exception("run %s failed", self.run.pk)
            self.error = f"{type(exc).__name__}: {exc}"
            self.event(EventKind.ERROR, self.error)
        finally:
            if not self.run.dry_run:
                self.revert_and_cleanup()
        self.recover_and_hand_off()

    def dry_run(self) -> None:
        injector = get_injector(self.spec.fault.type)
        text = injector.dry_run(self.spec.fault.params, self.context(expires_at=0.0))
        self.event(EventKind.INFO, f"dry run: would {text}")
        self.finish(RunStatus.COMPLETED, "dry run: nothing injected", verdict="")

    def context(self, *, expires_at: float) -> InjectionContext:
        return InjectionContext(
            fault_id=self.fault.pk if self.fault else None,
            target_name=self.target.name,
            target_config=self.target.connection_config(),
            intensity=self.spec.intensity,
            expires_at=expires_at,
        )

    def collect_and_inject(self) -> None:
        from analysis.collectors.query_template import query_context
        from experiments.services.collection import RunSampler

        self.sampler = RunSampler(
            self.run.pk,
            [m.model_dump() for m in self.spec.metrics],
            self.spec.interval,
            context=query_context(self.target.name, self.target.labels),
        )
        self.transition(RunStatus.BASELINE, baseline_started_at=timezone.now())
        self.sampler.start("baseline")
        self.wait(self.spec.baseline)

        self.transition(RunStatus.INJECTING, f"injecting {self.spec.fault.type}")
        expires_at = timezone.now() + timedelta(
            seconds=self.spec.duration + settings.SCEP_FAULT_EXPIRY_GRACE_S
        )
        self.fault = self.open_ledger_row(expires_at)
        self.event(
            EventKind.FAULT,
            f"ledger row {self.fault.pk} written; expires {expires_at:%H:%M:%S} UTC",
            fault=self.fault.pk,
        )
        self.check()
        self.fault = inject_fault(self.fault)
        db_retry(self.sampler.set_phase, "during")
        self.transition(
            RunStatus.DURING,
            f"fault active: {self.spec.fault.type}",
            injected_at=self.fault.injected_at or timezone.now(),
        )
        self.wait(self.spec.duration, stop_conditions=True)

    def open_ledger_row(self, expires_at) -> ActiveFault:
        """Per-target exclusion and the ledger insert happen in one transaction."""
        with transaction.atomic():
            Target.objects.select_for_update().filter(pk=self.target.pk).first()
            busy = ActiveFault.objects.filter(
                target=self.target, state__in=FaultState.open()
            ).exclude(run=self.run)
            if busy.exists():
                raise InjectionError(
                    f"target {self.target.name!r} already has an active fault "
                    f"(ledger row {busy.first().pk})"
                )
            return open_fault(
                run=self.run,
                target=self.target,
                injector=self.spec.fault.type,
                params=self.spec.fault.params,
                intensity=self.spec.intensity,
                expires_at=expires_at,
                owner_worker=self.worker,
            )

    def revert_and_cleanup(self) -> None:
        if self.fault is not None:
            reason = (
                self.interruption.reason
                if self.interruption
                else (self.error or "duration elapsed")
            )
            self.transition(RunStatus.REVERTING, f"reverting: {reason}")
            started = time.monotonic()
            if db_retry(revert_fault, self.fault, reason):
                elapsed = time.monotonic() - started
                self.transition(
                    RunStatus.REVERTING,
                    f"fault reverted in {elapsed * 1000:.0f} ms",
                    reverted_at=timezone.now(),
                )
                if self.breached_at is not None:
                    breach_ms = (time.monotonic() - self.breached_at) * 1000
                    self.event(
                        EventKind.INFO,
                        f"stop condition breach → fault reverted in {breach_ms:.0f} ms",
                        breach_to_revert_ms=round(breach_ms, 1),
                    )
            else:
                self.error = self.error or "the fault could not be confirmed reverted"
                self.event(
                    EventKind.ERROR,
                    "revert not confirmed by the agent; the fault expires by itself at "
                    f"{self.fault.expires_at:%H:%M:%S} UTC and the reaper will retry",
                )
        if self.spec.cleanup and self.sampler is not None:
            self.transition(RunStatus.CLEANUP, "running cleanup actions")
            for i, action in enumerate(self.spec.cleanup):
                try:
                    run_cleanup_action(action.model_dump())
                    self.event(EventKind.INFO, f"cleanup[{i}] {action.type} done")
                except Exception as exc:
                    self.event(EventKind.WARNING, f"cleanup[{i}] {action.type} failed: {exc}")

    def recover_and_hand_off(self) -> None:
        if self.sampler is None:  # nothing was collected (aborted before baseline)
            status, reason = self.final_status()
            self.finish(status, reason)
            return
        keep_recovery = self.interruption is None or self.interruption.keep_recovery
        if keep_recovery and not self.error and self.fault is not None:
            db_retry(self.sampler.set_phase, "recovery")
            self.transition(RunStatus.RECOVERY, recovery_started_at=timezone.now())
            try:
                self.wait(self.spec.recovery)
            except RunInterrupted as exc:
                if self.interruption is None:
                    self.interruption = exc
        range_errors = self.sampler.stop(self.phase_bounds())
        for metric, error in range_errors.items():
            self.event(EventKind.WARNING, f"{metric}: range query failed, kept ticks: {error}")
        status, reason = self.final_status()
        if status == RunStatus.FAILED and "ended elsewhere" in reason:
            return
        # The analysis runs in its own task (queue ``analysis``); this thread is done.
        breached = bool(self.interruption and self.interruption.keep_recovery)
        db_retry(hand_off, self.run, status, reason, breached=breached)

    def phase_bounds(self) -> dict[str, tuple[float, float]]:
        """Each phase's (start, end) in epoch seconds, for after-the-fact range queries."""
        now = time.time()
        run = self.run
        bounds = {}
        if run.baseline_started_at:
            end = run.injected_at or run.reverted_at
            bounds["baseline"] = (run.baseline_started_at.timestamp(),
                                  end.timestamp() if end else now)  # fmt: skip
        if run.injected_at:
            end = run.reverted_at.timestamp() if run.reverted_at else now
            bounds["during"] = (run.injected_at.timestamp(), end)
        if run.recovery_started_at:
            bounds["recovery"] = (run.recovery_started_at.timestamp(), now)
        return bounds

    def final_status(self) -> tuple[str, str]:
        if self.error:
            return RunStatus.FAILED, self.error
        if self.interruption:
            return self.interruption.status, self.interruption.reason
        return RunStatus.COMPLETED, "all phases completed"

    def finish(
        self,
        status: str,
        reason: str,
        *,
        verdict: str | None = None,
        confidence: float | None = None,
        verdict_reason: str = "",
        write_report: bool = False,
    ) -> None:
        """End the run from this thread (dry run, preflight refusal, nothing collected)."""
        finish_run(
            self.run,
            status,
            reason,
            verdict=verdict,
            confidence=confidence,
            verdict_reason=verdict_reason,
            write_report=write_report,
        )


def run_cleanup_action(action: dict[str, Any]) -> None:
    kind = action["type"]
    if kind == "wait":
        time.sleep(action["seconds"])
    elif kind == "http":
        response = httpx.request(action["method"], action["url"], timeout=action["timeout"])
        response.raise_for_status()
    elif kind == "command":
        subprocess.run(
            action["command"], check=True, timeout=action["timeout"], capture_output=True
        )


def claim_run(run_id: int, worker: str) -> Run | None:
    """Move a queued run to preflight for this worker; None if someone else has it.

    Redelivered task messages (acks_late) land here too and find nothing to do, which is
    what keeps a fault from being injected twice.
    """
    now = timezone.now()
    claimed = Run.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(
        status=RunStatus.PREFLIGHT, worker=worker, started_at=now, heartbeat_at=now
    )
    if not claimed:
        return None
    return Run.objects.select_related("experiment__target").get(pk=run_id)


def execute_run(run_id: int, worker: str | None = None) -> Run | None:
    with run_context(run_id):
        worker = worker or worker_identity()
        run = claim_run(run_id, worker)
        if run is None:
            return None
        Orchestrator(run, worker).execute()
        run.refresh_from_db()
        return run
