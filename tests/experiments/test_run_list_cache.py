"""The run list's page cache is never stale: the database moves its counter in the same
transaction as any change a list row shows, whichever way the change is made, and a page
is only ever served under the counter it was built at.

Transactional tests: pages are shared only outside transactions, which is how the API
serves them (and not how pytest-django's rolled-back tests run)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.utils import timezone

from experiments.models import Experiment, Run
from experiments.services import run_list
from governance.models import Team, TeamMembership
from scep.permissions import VIEWER
from tests.conftest import _client
from tests.experiments.api.test_run_list import counted_queries

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    cache.clear()


def _run(experiment: Experiment, **fields: Any) -> Run:
    fields.setdefault("status", "completed")
    return Run.objects.create(
        experiment=experiment,
        experiment_version=experiment.version,
        spec=experiment.spec,
        **fields,
    )


def _page(client: Any, query: str = "") -> tuple[dict[str, Any], bool]:
    """The list page as JSON, and whether building it read the runs table."""
    with counted_queries() as seen:
        response = client.get(f"/api/v1/runs/{query}")
    assert response.status_code == 200, response.content
    return response.json(), any('"experiments_run"' in sql for sql in seen)


def test_the_counter_moves_with_every_change_a_list_row_shows(
    experiment: Experiment, viewer: User
) -> None:
    start = run_list.version()
    assert start is not None
    run = _run(experiment)
    assert run_list.version() > start  # insert

    moved = run_list.version()
    Run.objects.filter(pk=run.pk).update(status="failed")  # bulk update, no save()
    assert run_list.version() > moved

    moved = run_list.version()
    Experiment.objects.filter(pk=experiment.pk).update(name="renamed")
    assert run_list.version() > moved

    moved = run_list.version()
    User.objects.filter(pk=viewer.pk).update(username="vera-renamed")
    assert run_list.version() > moved

    moved = run_list.version()
    Run.objects.filter(pk=run.pk).delete()
    assert run_list.version() > moved


def test_the_counter_stays_for_columns_the_list_does_not_show(experiment: Experiment) -> None:
    run = _run(experiment)
    before = run_list.version()
    # A worker's heartbeat and the run's summary are not list columns.
    Run.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now(), summary={"x": 1})
    assert run_list.version() == before


def test_an_unchanged_page_is_served_from_the_cache_and_a_change_shows_at_once(
    viewer_client: Any, experiment: Experiment
) -> None:
    run = _run(experiment, status="during")
    first, built = _page(viewer_client)
    again, read_runs = _page(viewer_client)
    assert again == first
    assert built and not read_runs  # no count, no page query: from the cache

    # Changed behind the ORM's back (as the orchestrator does, with update()).
    Run.objects.filter(pk=run.pk).update(status="completed", verdict="passed")
    changed, _ = _page(viewer_client)
    (row,) = changed["results"]
    assert (row["status"], row["verdict"]) == ("completed", "passed")

    _run(experiment)
    assert _page(viewer_client)[0]["count"] == 2


def test_each_user_gets_the_page_of_their_own_teams(
    viewer_client: Any, client_for: Any, make_target: Any, make_experiment: Any, viewer: User
) -> None:
    _run(make_experiment())  # default team, which the global viewer role sees
    payments = Team.objects.create(name="payments")
    make_target(name="pay-api", team=payments)
    _run(make_experiment(target="pay-api", name="pay-latency"))
    member = User.objects.create_user(username="pat-payments")
    TeamMembership.objects.create(team=payments, user=member, role=VIEWER)
    assert _page(viewer_client)[0]["count"] == 1
    seen_by_member = _page(_client(member))[0]
    assert seen_by_member["count"] == 1
    assert seen_by_member["results"][0]["experiment"] == "pay-latency"
    assert _page(viewer_client)[0]["results"][0]["experiment"] != "pay-latency"


def test_filters_and_pages_are_cached_apart(viewer_client: Any, experiment: Experiment) -> None:
    _run(experiment, status="completed")
    _run(experiment, status="failed")
    assert _page(viewer_client, "?status=failed")[0]["count"] == 1
    assert _page(viewer_client, "?status=completed")[0]["count"] == 1
    assert _page(viewer_client)[0]["count"] == 2
    assert len(_page(viewer_client, "?limit=1&offset=1")[0]["results"]) == 1


def test_with_the_cache_off_every_page_is_built(
    viewer_client: Any, experiment: Experiment, settings: Any
) -> None:
    settings.SCEP_API_LIST_CACHE = False
    _run(experiment)
    assert _page(viewer_client)[1]
    assert _page(viewer_client)[1]  # read again


def test_a_failing_cache_only_costs_the_rebuild(
    viewer_client: Any, experiment: Experiment, monkeypatch: Any
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("cache down")

    monkeypatch.setattr(cache, "get", broken)
    monkeypatch.setattr(cache, "set", broken)
    _run(experiment)
    assert _page(viewer_client)[0]["count"] == 1


def test_inside_a_transaction_nothing_is_shared(experiment: Experiment) -> None:
    from django.db import transaction

    built = []

    def build() -> list[int]:
        built.append(1)
        return [len(built)]

    url = "http://x/api/v1/runs/"
    with transaction.atomic():
        _run(experiment)
        assert run_list.cached_page(SimpleNamespace(), None, url, build) == [1]
    # Outside, the page is built afresh (nothing was stored from inside), then shared.
    assert run_list.cached_page(SimpleNamespace(), None, url, build) == [2]
    assert run_list.cached_page(SimpleNamespace(), None, url, build) == [2]
