"""Celery tasks of the control plane: thin wrappers that take ids and call services."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="experiments.tasks.execute_run", acks_late=True)
def execute_run(run_id: int) -> None:
    from experiments.services.orchestrator import execute_run as run

    run(run_id)


@shared_task(name="experiments.tasks.reap", ignore_result=True)
def reap() -> dict[str, int]:
    from experiments.services.reaper import reap as do_reap

    return do_reap()
