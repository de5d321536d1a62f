"""The orchestrator's side of the active-fault ledger.

The ledger row is written and committed *before* anything is injected, then the
agent that owns the target's host is asked (through its Celery queue) to apply or
revert it. The agent writes the outcome back on the row, which is what callers wait on:
the broker carries only ids, the database holds the truth.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from injectors.base import InjectionError
from injectors.models import ActiveFault, Agent, FaultState
from injectors.registry import get_injector

__all__ = [
    "AgentOffline",
    "acts_on_host",
    "agent_is_online",
    "inject_fault",
    "open_fault",
    "request_revert",
    "revert_fault",
    "revert_open_faults",
    "wait_for_faults",
]


log = logging.getLogger(__name__)


class AgentOffline(InjectionError):
    """The target's agent has not sent a heartbeat recently."""


def agent_is_online(name: str, *, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.SCEP_AGENT_OFFLINE_AFTER_S)
    return Agent.objects.filter(name=name, last_heartbeat__gte=cutoff).exists()


def open_fault(
    *,
    run: Any,
    target: Any,
    injector: str,
    params: dict[str, Any],
    intensity: float,
    expires_at: datetime,
    owner_worker: str,
) -> ActiveFault:
    """Write the ledger row (committed on return) before the fault exists."""
    with transaction.atomic():
        return ActiveFault.objects.create(
            run=run,
            target=target,
            injector=injector,
            params=params,
            intensity=intensity,
            agent=target.agent,
            expires_at=expires_at,
            owner_worker=owner_worker,
        )


def acts_on_host(injector: str) -> bool:
    """Host-local faults go through the target's agent; the others (remote APIs such as
    AWS) are applied and reverted by whichever control-plane process asks."""
    return get_injector(injector).host_local


def _send(task_name: str, fault: ActiveFault, reason: str = "") -> None:
    if not acts_on_host(fault.injector):
        from injectors import execution

        if task_name == "apply_fault":
            execution.apply_fault(fault.pk)
            return
        try:
            execution.revert_fault(fault.pk, reason)
        except Exception as exc:  # the remote API failed: the row stays open for a retry
            log.warning("revert of fault %s failed: %s", fault.pk, exc)
            ActiveFault.objects.filter(pk=fault.pk).update(
                error=f"revert failed: {type(exc).__name__}: {exc}"[:2000]
            )
        return
    from injectors import tasks

    task = getattr(tasks, task_name)
    task.apply_async(args=[fault.pk], queue=f"agent.{fault.agent}")


def wait_for_faults(
    fault_ids: list[int], states: tuple[str, ...], timeout: float, poll: float = 0.02
) -> dict[int, ActiveFault]:
    """Poll the ledger until every fault is in one of ``states`` or the time is up."""
    deadline = time.monotonic() + timeout
    pending = set(fault_ids)
    done: dict[int, ActiveFault] = {}
    while True:
        for fault in ActiveFault.objects.filter(pk__in=pending, state__in=states):
            done[fault.pk] = fault
            pending.discard(fault.pk)
        if not pending or time.monotonic() >= deadline:
            return done
        time.sleep(poll)


def inject_fault(fault: ActiveFault, *, timeout: float | None = None) -> ActiveFault:
    """Ask the agent to apply an open ledger row and wait until it says so."""
    timeout = settings.SCEP_AGENT_REPLY_TIMEOUT_S if timeout is None else timeout
    _send("apply_fault", fault)
    done = wait_for_faults(
        [fault.pk], (FaultState.ACTIVE, FaultState.FAILED, FaultState.REVERTED), timeout
    )
    if fault.pk not in done:
        raise InjectionError(f"agent {fault.agent!r} did not apply the fault within {timeout:g} s")
    result = done[fault.pk]
    if result.state == FaultState.FAILED:
        raise InjectionError(result.error or "the agent could not apply the fault")
    if result.state == FaultState.REVERTED:
        raise InjectionError(
            f"the fault was reverted before it took effect: {result.revert_reason}"
        )
    return result


def request_revert(fault: ActiveFault, reason: str) -> None:
    """Mark the row as to-be-reverted (first reason wins) and ask its agent."""
    ActiveFault.objects.filter(pk=fault.pk, revert_requested_at__isnull=True).update(
        revert_requested_at=timezone.now(), revert_reason=reason[:200]
    )
    _send("revert_fault", fault, reason)


def revert_fault(fault: ActiveFault, reason: str, *, timeout: float | None = None) -> bool:
    """Revert one fault and wait; True when the ledger shows it reverted."""
    return revert_open_faults(reason=reason, faults=[fault], timeout=timeout) == 1


def revert_open_faults(
    *, reason: str, faults: list[ActiveFault] | None = None, timeout: float | None = None
) -> int:
    """Ask every agent concerned to revert, in parallel; return how many are now closed."""
    timeout = settings.SCEP_AGENT_REPLY_TIMEOUT_S if timeout is None else timeout
    if faults is None:
        faults = list(ActiveFault.objects.filter(state__in=FaultState.open()))
    if not faults:
        return 0
    for fault in faults:
        if fault.state in FaultState.open():
            request_revert(fault, reason)
    done = wait_for_faults(
        [f.pk for f in faults], (FaultState.REVERTED, FaultState.FAILED), timeout
    )
    # FAILED rows never took effect (the agent undid any partial work when inject failed).
    return len(done)
