"""Following a run from the terminal: a live progress bar over the planned phases and
the timeline as it happens (plain lines when stderr is not a terminal)."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from experiments.choices import RunStatus, Verdict
from experiments.models import Run, RunEvent

__all__ = ["exit_code_for", "follow_run"]

POLL_S = 0.25


def _planned_seconds(run: Run) -> float:
    spec = run.spec
    return float(spec["baseline"]) + float(spec["duration"]) + float(spec["recovery"])


def follow_run(run_id: int, *, timeout: float = 3600.0, quiet: bool = False) -> Run:
    """Block until the run is terminal, showing progress on stderr."""
    console = Console(stderr=True, highlight=False)
    run = Run.objects.get(pk=run_id)
    planned = max(_planned_seconds(run), 1.0)
    last_event = 0
    deadline = time.monotonic() + timeout
    live = console.is_terminal and not quiet
    progress = Progress(
        TextColumn("[bold]{task.description:<28}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        disable=not live,
        transient=False,
    )
    with progress:
        task = progress.add_task(f"run {run_id}: queued", total=planned)
        while True:
            run.refresh_from_db()
            for event in RunEvent.objects.filter(run_id=run_id, pk__gt=last_event):
                last_event = event.pk
                if not quiet:
                    line = f"{event.at:%H:%M:%S} [{event.phase}] {event.message}"
                    (progress.console.print if live else _plain)(line)
            if run.started_at is not None:
                from django.utils import timezone

                elapsed = (timezone.now() - run.started_at).total_seconds()
                progress.update(
                    task,
                    completed=min(elapsed, planned),
                    description=f"run {run_id}: {run.get_status_display()}",
                )
            if run.is_terminal:
                progress.update(task, completed=planned)
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {run.status} after {timeout:g} s")
            time.sleep(POLL_S)


def _plain(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def exit_code_for(run: Run) -> int:
    """0 passed (or a completed dry run), 1 hypothesis failed / not proven, 2 error."""
    if run.status == RunStatus.FAILED:
        return 2
    if run.verdict == Verdict.PASSED or (run.dry_run and run.status == RunStatus.COMPLETED):
        return 0
    return 1
