"""Celery tasks of the analysis: they run on queue ``analysis`` (scep/settings.py), so a
pool of workers can analyse while others drive runs."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="analysis.tasks.analyse_run", acks_late=True)
def analyse_run(run_id: int) -> None:
    """Analyse a run waiting in ANALYSING and end it (experiments.services.conclusion).

    Acks late: a worker killed mid-analysis has its message redelivered, and the claim
    lets only one delivery finish the run. Memory is handed back to the kernel after
    each run, as after ``experiments.tasks.execute_run`` (see scep.memory).
    """
    from experiments.services.conclusion import conclude_run
    from scep.memory import release_free_memory

    try:
        conclude_run(run_id)
    finally:
        release_free_memory(after="analyse_run")
