"""Applying and reverting one ledger row: the steps shared by agents (host-local faults)
and by the control plane itself (faults acted out through remote APIs, such as AWS).

Both steps are idempotent and safe against duplicate deliveries: a row is injected only
from ``pending`` and reverted only while it is open.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from typing import Any

from django.utils import timezone

from injectors.base import InjectionContext, InjectionError
from injectors.models import ActiveFault, FaultState
from injectors.registry import get_injector
from observability import events

__all__ = ["apply_fault", "revert_fault"]

log = logging.getLogger(__name__)

_locks: dict[int, threading.Lock] = defaultdict(threading.Lock)
_locks_guard = threading.Lock()


def _lock(fault_id: int) -> threading.Lock:
    with _locks_guard:
        return _locks[fault_id]


def _context(fault: ActiveFault, runtime: Any) -> InjectionContext:
    from scep.crypto import SecretUnavailable

    try:  # the target's credentials, decrypted and resolved only here, where they are used
        config = fault.target.connection_config()
    except SecretUnavailable as exc:
        raise InjectionError(f"target {fault.target.name!r}: {exc}") from None
    return InjectionContext(
        fault_id=fault.pk,
        target_name=fault.target.name,
        target_config=config,
        intensity=fault.intensity,
        expires_at=fault.expires_at.timestamp(),
        runtime=runtime,
    )


def _audit(fault: ActiveFault, action: str, *, by_agent: bool, **changes: Any) -> None:
    """Append the fault's change to the audit trail, source ``agent`` when an agent did
    it. Never lets a failing audit write stop an inject or a revert."""
    try:
        from audit.models import AuditSource
        from audit.services import record

        source = AuditSource.AGENT if by_agent else AuditSource.SYSTEM
        actor = f"agent:{fault.agent}" if by_agent else "control-plane"
        changes.setdefault("injector", fault.injector)
        changes.setdefault("run", fault.run_id)
        record(actor=actor, action=action, source=source, obj=fault, changes=changes)
    except Exception:
        log.exception("audit of %s on fault %s failed", action, fault.pk)


def _in_agent() -> bool:
    """True in an agent process (its housekeeping reverts without passing its runtime)."""
    from injectors import agent

    return getattr(agent, "_runtime", None) is not None


def _fault(fault_id: int) -> ActiveFault:
    return ActiveFault.objects.select_related("target").get(pk=fault_id)


def apply_fault(fault_id: int, runtime: Any = None, *, where: str = "control plane") -> None:
    with _lock(fault_id):
        fault = _fault(fault_id)
        if fault.state != FaultState.PENDING:
            return  # duplicate delivery: never inject twice
        now = timezone.now()
        if fault.revert_requested_at is not None or fault.expires_at <= now:
            ActiveFault.objects.filter(pk=fault_id).update(
                state=FaultState.REVERTED,
                reverted_at=now,
                revert_reason=fault.revert_reason or "expired before it was applied",
            )
            events.fault_injected(fault.injector, "expired")
            return
        try:
            handle = get_injector(fault.injector).inject(fault.params, _context(fault, runtime))
        except Exception as exc:
            log.warning("%s: inject of fault %s failed: %s", where, fault_id, exc)
            ActiveFault.objects.filter(pk=fault_id).update(
                state=FaultState.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000]
            )
            events.fault_injected(fault.injector, "failed")
            _audit(
                fault,
                "fault.apply_failed",
                by_agent=where != "control plane",
                state={"before": FaultState.PENDING, "after": FaultState.FAILED},
            )
            return
        ActiveFault.objects.filter(pk=fault_id).update(
            state=FaultState.ACTIVE, handle=handle, injected_at=timezone.now()
        )
        events.fault_injected(fault.injector, "applied")
        _audit(
            fault,
            "fault.apply",
            by_agent=where != "control plane",
            state={"before": FaultState.PENDING, "after": FaultState.ACTIVE},
            params=fault.params,
        )


def revert_fault(fault_id: int, reason: str = "", runtime: Any = None) -> None:
    with _lock(fault_id):
        fault = _fault(fault_id)
        if fault.state not in FaultState.open():
            return
        if fault.state == FaultState.ACTIVE:
            get_injector(fault.injector).revert(fault.handle, _context(fault, runtime))
        closed = ActiveFault.objects.filter(pk=fault_id, state__in=FaultState.open()).update(
            state=FaultState.REVERTED,
            reverted_at=timezone.now(),
            revert_reason=fault.revert_reason or reason or "reverted",
        )
        if closed:
            why = fault.revert_reason or reason or "reverted"
            events.fault_reverted(fault.injector, why)
            _audit(
                fault,
                "fault.revert",
                by_agent=runtime is not None or _in_agent(),
                state={"before": fault.state, "after": FaultState.REVERTED},
                reason=why,
            )
