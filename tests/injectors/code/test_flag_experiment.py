"""A ``code.flag`` experiment end to end with real processes: an orchestrator worker and
an agent (subprocesses), the SCEP API on the live server, and the sample application
(``demo.flags_app``) calling its payment provider through the failure flag."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.urls import get_resolver
from rest_framework.authtoken.models import Token

import scep_flags
from analysis.models import MetricSeries
from demo.flags_app import make_app_server
from experiments.choices import RunStatus
from experiments.models import Run
from experiments.services.catalog import create_experiment, create_target
from experiments.services.runs import start_run
from injectors.models import ActiveFault, FaultState
from tests.support.processes import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def flags_app(live_server: Any, viewer: Any) -> Iterator[str]:
    """The sample app, in a thread, reading its flags from the live SCEP API."""
    token = Token.objects.get_or_create(user=viewer)[0].key
    # Import the URLconf before the app polls: on a cold live server that import can
    # outlast the SDK's deadline, and the app would (correctly) see no flags meanwhile.
    get_resolver().url_patterns  # noqa: B018
    # A deadline above the default 0.5 s: a slow live server must not read as "no faults".
    scep_flags.configure(live_server.url, token, cache_ttl_s=0.2, timeout_s=2.0, target="checkout")
    server = make_app_server()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)
    scep_flags.reset()


def test_a_flag_experiment_faults_the_app_only_while_it_runs(
    flags_app: str, start_agent, start_worker
) -> None:
    target = create_target(
        actor="test", source="system", name="checkout", agent="flag-agent", config={}
    )
    start_agent("flag-agent")
    start_worker()
    # Longer than the SDK's deadline, so a slow flag fetch is never a probe error.
    probe = {"url": f"{flags_app}/checkout?region=eu", "timeout": 5.0, "requests": 4}
    spec = {
        "name": "charge-fails",
        "target": target.name,
        "fault": {
            "type": "code.flag",
            "params": {
                "flag": "checkout.charge",
                "labels": {"region": "eu"},
                "effect": "exception",
                "exception": {"type": "ConnectionError", "message": "provider down"},
            },
        },
        "duration": 6,  # long enough for the checks below to land inside the fault window
        "baseline": 1.5,
        "recovery": 1.5,
        "interval": 0.5,
        "metrics": [{"name": "errors", "better": "lower", "probe": probe, "measure": "error_rate"}],
        "hypothesis": [
            {
                "metric": "errors",
                "phase": "during",
                "aggregate": "mean",
                "operator": "<=",
                "threshold": 0.05,
            },
        ],
    }
    run = start_run(
        create_experiment(spec, actor="test", source="system"), actor="test", source="system"
    )

    def status() -> str:
        run.refresh_from_db()
        return run.status

    wait_until(lambda: status() == RunStatus.DURING, 60, "the run to reach 'during'")
    # While the fault is on: other regions are untouched, eu checkouts fail like an outage.
    wait_until(lambda: httpx.get(f"{flags_app}/checkout?region=eu").status_code == 502, 5, "a 502")
    assert httpx.get(f"{flags_app}/checkout?region=us").status_code == 200

    wait_until(lambda: status() in RunStatus.terminal(), 60, "the run to end")
    assert run.status == RunStatus.COMPLETED, run.status_reason
    assert run.verdict == "failed"  # the hypothesis "no errors during" was refuted

    fault = ActiveFault.objects.get(run=run)
    assert fault.state == FaultState.REVERTED
    assert fault.handle == {"flag": "checkout.charge", "effect": "exception"}

    def error_rate(phase: str) -> float:
        values = [
            v
            for series in MetricSeries.objects.filter(run=run, metric="errors", phase=phase)
            for v in series.values
        ]
        assert values, f"no {phase} samples"
        return sum(values) / len(values)

    assert error_rate("baseline") == 0.0
    assert error_rate("during") > 0.6  # a sample at the phase edge may straddle a poll
    assert error_rate("recovery") < 0.5  # likewise the SDK cache (0.2 s) at the revert

    # Reverted: the app is healthy again once its cache has turned over.
    wait_until(lambda: httpx.get(f"{flags_app}/checkout?region=eu").status_code == 200, 5, "a 200")
    assert Run.objects.get(pk=run.pk).status == RunStatus.COMPLETED
