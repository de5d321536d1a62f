"""The run list's fast path: the same JSON as ``RunSerializer`` on model instances, and a
fixed number of queries however many runs there are (no query per row)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from experiments.api.serializers import RunSerializer
from experiments.models import Run

pytestmark = pytest.mark.django_db


@contextmanager
def counted_queries() -> Iterator[list[str]]:
    """SQL statements run on the default connection inside the block.

    Counted at execution (not from ``connection.queries``, which every request start
    clears), so it sees the queries of requests made through the test client.
    """
    seen: list[str] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        yield seen


def _runs(experiment: Any, users: list[Any], count: int) -> None:
    """``count`` finished runs, each started and approved by someone, with every list
    field filled (a missing join would then cost a query per row)."""
    now = timezone.now()
    Run.objects.bulk_create(
        Run(
            experiment=experiment,
            experiment_version=experiment.version,
            spec=experiment.spec,
            status="completed",
            status_reason=f"run {i} done",
            verdict="passed",
            verdict_confidence=0.5 + i / 1000,
            dry_run=bool(i % 2),
            started_by=users[i % len(users)],
            approved_by=users[(i + 1) % len(users)],
            approved_at=now - timedelta(seconds=i),
            started_at=now,
            finished_at=now + timedelta(microseconds=i),
            summary={"analysis": {"score": {"value": i}}},
        )
        for i in range(count)
    )


def _list_queries(client: Any) -> int:
    with counted_queries() as seen:
        response = client.get("/api/v1/runs/?limit=100")
    assert response.status_code == 200, response.content
    return len(seen)


def test_list_query_count_does_not_grow_with_the_runs(
    viewer_client: Any, viewer: Any, operator: Any, experiment: Any
) -> None:
    _runs(experiment, [viewer, operator], 5)
    with_5 = _list_queries(viewer_client)
    _runs(experiment, [viewer, operator], 45)
    with_50 = _list_queries(viewer_client)
    assert viewer_client.get("/api/v1/runs/?limit=100").json()["count"] == 50
    assert with_50 == with_5
    # Authentication, team scoping, the count and the page: a handful, not one per run.
    assert with_50 <= 8


def test_list_rows_are_what_the_serializer_renders(
    viewer_client: Any, viewer: Any, operator: Any, experiment: Any
) -> None:
    _runs(experiment, [viewer, operator], 3)
    Run.objects.create(  # a queued run: nulls everywhere the list allows them
        experiment=experiment, experiment_version=experiment.version, spec=experiment.spec
    )
    body = viewer_client.get("/api/v1/runs/").json()
    expected = RunSerializer(Run.objects.all(), many=True).data
    assert body["count"] == 4
    assert body["results"] == [dict(row) for row in expected]
    assert {r["started_by"] for r in body["results"]} == {viewer.username, operator.username, None}
    queued = body["results"][0]
    assert queued["finished_at"] is None and queued["approved_by"] is None
    assert "spec" not in queued and "summary" not in queued
