"""AWS faults need no agent: the control plane applies them, and the reaper reverts
them after expiry even when no agent exists at all (AWS has no TTL of its own)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from experiments.services.catalog import create_target
from experiments.services.reaper import reap
from injectors.models import ActiveFault, FaultState
from injectors.services import acts_on_host, inject_fault, open_fault
from tests.injectors.cloud.test_ec2 import launch, states

pytestmark = pytest.mark.django_db(transaction=True)


def test_cloud_faults_are_not_host_local():
    assert not acts_on_host("cloud.ec2_stop")
    assert acts_on_host("network.latency")


def test_the_reaper_starts_stopped_instances_again_after_expiry_with_no_agent(
    target_config, aws, unique
):
    ec2 = aws("ec2")
    tags = {"fleet": unique}
    ids = launch(ec2, 2, tags)
    target = create_target(
        actor="t",
        source="system",
        name=f"aws-{unique}"[:100],
        agent="no-such-agent",
        config=target_config,
    )
    fault = open_fault(
        run=None, target=target, injector="cloud.ec2_stop", params={"tags": tags},
        intensity=1.0, expires_at=timezone.now() + timedelta(seconds=1), owner_worker="test",
    )  # fmt: skip
    fault = inject_fault(fault)
    assert fault.state == FaultState.ACTIVE
    assert set(states(ec2, ids).values()) <= {"stopping", "stopped"}

    time.sleep(1.2)
    assert reap()["faults_reverted"] == 1
    fault.refresh_from_db()
    assert fault.state == FaultState.REVERTED
    assert fault.revert_reason == "reaper: expired"
    assert set(states(ec2, ids).values()) <= {"pending", "running"}
    assert ActiveFault.objects.filter(state__in=FaultState.open()).count() == 0
