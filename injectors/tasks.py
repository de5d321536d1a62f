"""Tasks executed by agents (queue ``agent.<name>``): thin wrappers over the agent."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="injectors.apply_fault", acks_late=False)
def apply_fault(fault_id: int) -> None:
    from injectors.agent import apply_fault as apply

    apply(fault_id)


@shared_task(name="injectors.revert_fault", acks_late=False)
def revert_fault(fault_id: int) -> None:
    from injectors.agent import revert_fault as revert

    revert(fault_id)
