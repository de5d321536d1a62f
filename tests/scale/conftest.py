"""Helpers for the scale-out and platform-fault tests: a static HTTP server to probe,
run factories that bypass nothing (catalog + runs services), and the checks every
platform-fault test ends with (no open fault, truthful terminal state, one ledger row)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import free_port, wait_until

SCALE_ENV = "SCEP_RUN_SCALE"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The 100-run test takes minutes on 2 cores: `make test-scale` (in `make ci`) runs it."""
    if os.environ.get(SCALE_ENV) == "1":
        return
    skip = pytest.mark.skip(reason=f"scale test: set {SCALE_ENV}=1 (make test-scale)")
    for item in items:
        if item.get_closest_marker("scale") is not None:
            item.add_marker(skip)


def services_pass() -> bool:
    from django.conf import settings

    return settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


@pytest.fixture
def http_server(tmp_path: Path):
    """A threaded static HTTP server in its own process: something cheap to probe."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_text("ok\n")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/index.html"

    def up() -> bool:
        import httpx

        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, 20, "static HTTP server")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def switch_broker(settings: Any, url: str) -> Callable[[], None]:
    """Point this process's Celery app (and, through ``settings``, every process the
    test spawns) at ``url``; returns the function that switches back."""
    from kombu import pools

    from scep.celery import app

    keys = ("broker_url", "broker_transport", "broker_transport_options")
    saved = {k: app.conf[k] for k in keys}

    def reset() -> None:
        pools.reset()
        if app._pool is not None:
            app._pool.force_close_all()
            app._pool = None
        app.amqp._producer_pool = None

    # Celery reads CELERY_BROKER_URL from the environment before its configuration.
    saved_env = os.environ.get("CELERY_BROKER_URL")
    os.environ["CELERY_BROKER_URL"] = url
    settings.CELERY_BROKER_URL = url
    app.conf.update(broker_url=url, broker_transport=None, broker_transport_options={})
    reset()
    assert app.connection_for_write().as_uri().split("://")[0] == url.split("://")[0]

    def restore() -> None:
        if saved_env is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = saved_env
        app.conf.update(saved)
        reset()

    return restore


def placebo_spec(name: str, target: str, probe_url: str, **overrides: Any) -> dict[str, Any]:
    """A short run with a placebo fault: every step of a real run, nothing changed."""
    spec: dict[str, Any] = {
        "name": name,
        "target": target,
        "fault": {"type": "control.placebo", "params": {}},
        "duration": 1,
        "baseline": 1,
        "recovery": 1,
        "interval": 0.5,
        "metrics": [
            {
                "name": "latency",
                "better": "lower",
                "measure": "latency_p50",
                "probe": {"url": probe_url, "requests": 1, "timeout": 2.0},
            }
        ],
    }
    spec.update(overrides)
    return spec


def start(spec: dict[str, Any]):
    from experiments.services.catalog import create_experiment
    from experiments.services.runs import start_run

    experiment = create_experiment(spec, actor="test", source="system")
    return start_run(experiment, actor="test", source="system")


def wait_terminal(runs: Iterable[Any], timeout: float) -> list[Any]:
    from experiments.choices import RunStatus
    from experiments.models import Run

    ids = [r.pk for r in runs]

    def done() -> bool:
        return not Run.objects.filter(pk__in=ids).exclude(status__in=RunStatus.terminal()).exists()

    try:
        wait_until(done, timeout, f"{len(ids)} runs to end", poll=0.5)
    except AssertionError:
        stuck = list(
            Run.objects.filter(pk__in=ids)
            .exclude(status__in=RunStatus.terminal())
            .values_list("pk", "status")
        )
        raise AssertionError(f"runs not terminal after {timeout:g} s: {stuck}") from None
    return list(Run.objects.filter(pk__in=ids).order_by("pk"))


def wait_status(run: Any, statuses: str | Iterable[str], timeout: float = 60) -> Any:
    wanted = {statuses} if isinstance(statuses, str) else set(statuses)

    def reached() -> bool:
        run.refresh_from_db()
        return run.status in wanted

    wait_until(reached, timeout, f"run {run.pk} to reach {wanted} (is {run.status})")
    return run


def assert_no_open_fault() -> None:
    from injectors.models import ActiveFault, FaultState

    still = list(
        ActiveFault.objects.filter(state__in=FaultState.open()).values_list("pk", "state", "run")
    )
    assert not still, f"faults left open: {still}"


def assert_never_overlapping(target_ids: Iterable[int] | None = None) -> None:
    """Per-target exclusion, checked on the ledger: no two faults on one target overlap."""
    from injectors.models import ActiveFault

    rows = ActiveFault.objects.exclude(injected_at=None)
    if target_ids is not None:
        rows = rows.filter(target_id__in=list(target_ids))
    by_target: dict[int, list[Any]] = {}
    for fault in rows.order_by("injected_at"):
        by_target.setdefault(fault.target_id, []).append(fault)
    for faults in by_target.values():
        for earlier, later in pairwise(faults):
            assert earlier.reverted_at is not None
            assert earlier.reverted_at <= later.injected_at, (
                f"faults {earlier.pk} and {later.pk} overlap on target {earlier.target_id}"
            )
