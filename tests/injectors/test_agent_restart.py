"""A restarted agent closes what its previous run left open, and only that: a fault
opened once the new agent is up is work for it, however soon after its start."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from experiments.services.catalog import create_target
from injectors.agent import AgentRuntime
from injectors.models import ActiveFault, FaultState
from injectors.services import open_fault


def pending_fault(target, *, opened_at=None) -> ActiveFault:
    fault = open_fault(
        run=None,
        target=target,
        injector="process.pause",
        params={"process": "sleeper"},
        intensity=1.0,
        expires_at=timezone.now() + timedelta(seconds=60),
        owner_worker="test",
    )
    if opened_at is not None:
        ActiveFault.objects.filter(pk=fault.pk).update(created_at=opened_at)
    return fault


@pytest.mark.django_db
def test_recover_leftovers_reverts_rows_from_before_the_start_and_keeps_newer_ones():
    target = create_target(actor="t", source="system", name="box", agent="edge", config={})
    runtime = AgentRuntime("edge")  # not start()ed: no heartbeat, no housekeeping thread
    try:
        runtime.started_at = timezone.now()
        left_behind = pending_fault(target, opened_at=runtime.started_at - timedelta(seconds=5))
        new_work = pending_fault(target, opened_at=runtime.started_at + timedelta(milliseconds=1))

        runtime.recover_leftovers()

        left_behind.refresh_from_db()
        new_work.refresh_from_db()
        assert left_behind.state == FaultState.REVERTED
        assert left_behind.revert_reason == "agent restarted"
        assert new_work.state == FaultState.PENDING
    finally:
        runtime.stop()
