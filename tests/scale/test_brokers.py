"""Both production brokers carry a real run end to end: Redis (the PostgreSQL + Redis
pass, and the broker-restart test) and RabbitMQ, here in a virtual host of the test's own
on the machine's RabbitMQ so nothing else on it is touched."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

import pytest

from experiments.choices import RunStatus
from injectors.models import ActiveFault, FaultState
from tests.scale.conftest import assert_no_open_fault, start, switch_broker, wait_status
from tests.support.processes import free_port, round_trip_ms

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RABBIT = ("127.0.0.1", int(os.environ.get("SCEP_TEST_RABBITMQ_PORT", "5672")))


def _rabbitmqctl(*argv: str) -> None:
    subprocess.run(["rabbitmqctl", *argv], check=True, capture_output=True, timeout=60)


@pytest.fixture
def rabbitmq_vhost(settings):
    try:
        socket.create_connection(RABBIT, timeout=2).close()
        reachable = shutil.which("rabbitmqctl") is not None
    except OSError:
        reachable = False
    if not reachable:
        if os.environ.get("CI"):
            pytest.fail(f"RabbitMQ not reachable on {RABBIT} (CI requires it)")
        pytest.skip(f"RabbitMQ (and rabbitmqctl) not available on {RABBIT}")
    vhost = f"scep_test_{os.getpid()}_{free_port()}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        restore = switch_broker(settings, f"amqp://guest:guest@{RABBIT[0]}:{RABBIT[1]}/{vhost}")
        try:
            yield vhost
        finally:
            restore()
    finally:
        _rabbitmqctl("delete_vhost", vhost)


def test_a_run_through_rabbitmq(rabbitmq_vhost, stack, start_worker):
    start_worker()
    run = wait_status(start(stack.spec(duration=3)), RunStatus.terminal(), timeout=90)
    assert run.status == RunStatus.COMPLETED, run.status_reason
    fault = ActiveFault.objects.get(run=run)
    assert fault.state == FaultState.REVERTED
    assert fault.revert_reason == "duration elapsed"  # the agent got it over AMQP
    assert round_trip_ms(f"{stack.api_url}/api/items") < 100
    assert_no_open_fault()
