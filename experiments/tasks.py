"""Celery tasks of the control plane: thin wrappers that take ids and call services."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="experiments.tasks.execute_run", acks_late=True)
def execute_run(run_id: int) -> None:
    """Execute one run, then free its garbage and hand the memory back to the kernel.

    A worker lives for thousands of runs; without this, the run's HTTP clients wait in
    reference cycles for a rare full collection, each holding native SSL memory, and the
    worker's RSS grew by about a third before levelling off (see scep.memory).
    """
    from experiments.services.orchestrator import execute_run as run
    from scep.memory import release_free_memory

    try:
        run(run_id)
    finally:
        release_free_memory(after="execute_run")


@shared_task(name="experiments.tasks.reap", ignore_result=True)
def reap() -> dict[str, int]:
    from experiments.services.reaper import reap as do_reap

    return do_reap()
