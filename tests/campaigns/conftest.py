"""Fixtures of the campaign tests: a few experiments on the demo target."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture
def experiments(make_experiment: Callable[..., Any]) -> list[Any]:
    return [make_experiment(name=f"exp-{n}") for n in (1, 2, 3)]


@pytest.fixture
def finish_run() -> Callable[..., Any]:
    """End a run as its worker would (status, verdict, score), for tests without a worker."""
    from django.utils import timezone

    from experiments.models import Run

    def _finish(run: Any, status: str = "completed", verdict: str = "passed", **extra: Any):
        Run.objects.filter(pk=run.pk).update(
            status=status, verdict=verdict, finished_at=timezone.now(), **extra
        )
        run.refresh_from_db()
        return run

    return _finish
