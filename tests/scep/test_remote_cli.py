"""``scep run SPEC --server URL --token TOKEN --wait --junit out.xml`` against a real SCEP:
a web server process, an orchestrator worker and an agent in front of the demo service.
The CLI process gets a database of its own, so it can only have used the REST API."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest
import yaml
from rest_framework.authtoken.models import Token

from experiments.models import Experiment, Run
from scep.permissions import OPERATOR, VIEWER, ensure_roles
from tests.support.processes import ROOT, free_port, platform_env, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def server(broker_dir: Path, tmp_path: Path, transactional_db):
    """``manage.py runserver`` on a free port, sharing the test database and broker."""
    port = free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=platform_env(broker_dir),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, log_path.read_text()[-3000:]
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, 60, "the web server", 0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def token_for(django_user_model, username: str, role: str) -> str:
    from django.contrib.auth.models import Group

    ensure_roles()
    user = django_user_model.objects.create_user(username=username, password=None)
    user.groups.add(Group.objects.get(name=role))
    return Token.objects.create(user=user).key


def scep_run(tmp_path: Path, spec: dict | str, *args: str, **env: str):
    """Run the CLI in a separate process with its own (empty) local database."""
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec))
    local = tmp_path / "cli-var"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SCEP_")}
    environment.pop("DATABASE_URL", None)
    environment.update(
        SCEP_VAR_DIR=str(local),
        DATABASE_URL=f"sqlite:///{local / 'nothing-here.sqlite3'}",
        CELERY_BROKER_URL="filesystem://",
        DJANGO_SETTINGS_MODULE="scep.settings",
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", "scep", "run", str(spec_file), *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_remote_run_exits_0_when_the_hypothesis_holds_and_1_when_it_fails(
    stack, start_worker, server, tmp_path, django_user_model
):
    token = token_for(django_user_model, "ci-bot", OPERATOR)
    start_worker()
    junit = tmp_path / "out.xml"
    placebo = stack.spec(
        name="remote-ci",
        fault={"type": "control.placebo", "params": {}},
        baseline=3,
        duration=3,
        recovery=2,
    )
    placebo["hypothesis"][0]["threshold"] = 1000  # p50 <= 1 s: holds by a wide margin

    passed = scep_run(
        tmp_path, placebo, "--server", server, "--token", token, "--wait", "--junit", str(junit)
    )
    assert passed.returncode == 0, passed.stderr
    assert "run " in passed.stderr and "completed" in passed.stderr  # progress lines
    suite = ET.parse(junit).getroot()
    assert suite.tag in {"testsuite", "testsuites"}
    assert suite.iter("testcase")
    assert not list(suite.iter("failure"))
    run = Run.objects.get()
    assert run.verdict == "passed" and run.started_by.username == "ci-bot"

    # The same name with a failing hypothesis: the experiment is updated (a new version),
    # 150 ms on a ~10 ms API breaks p50 <= 100 ms, and the CLI says so with exit 1.
    failing = stack.spec(name="remote-ci", baseline=3, duration=3, recovery=2)
    failed = scep_run(
        tmp_path,
        failing,
        "--wait",
        "--junit",
        str(junit),
        SCEP_SERVER=server,
        SCEP_TOKEN=token,
    )
    assert failed.returncode == 1, failed.stderr
    assert "verdict failed" in failed.stderr
    assert list(ET.parse(junit).getroot().iter("failure"))
    assert Experiment.objects.get(name="remote-ci").version == 2
    assert Run.objects.count() == 2


def test_remote_errors_exit_2_with_one_readable_line(server, tmp_path, django_user_model, target):
    token = token_for(django_user_model, "ci-bot", OPERATOR)
    viewer_token = token_for(django_user_model, "looker", VIEWER)
    spec = {
        "name": "remote-bad",
        "target": "demo",
        "fault": {"type": "network.latency", "params": {"proxy": "downstream", "latency_ms": 50}},
        "duration": "5s",
    }

    def one_line_error(result) -> str:
        assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("scep: error: ")
        return lines[0]

    bad_token = one_line_error(scep_run(tmp_path, spec, "--server", server, "--token", "nope"))
    assert "refused the token (401)" in bad_token

    no_role = one_line_error(scep_run(tmp_path, spec, "--server", server, "--token", viewer_token))
    assert "forbidden" in no_role and "operator" in no_role

    dead = f"http://127.0.0.1:{free_port()}"
    unreachable = one_line_error(scep_run(tmp_path, spec, "--server", dead, "--token", token))
    assert "cannot reach SCEP" in unreachable

    invalid = dict(spec, duration="-5s")
    bad_spec = one_line_error(scep_run(tmp_path, invalid, "--server", server, "--token", token))
    assert "invalid spec" in bad_spec and "duration" in bad_spec

    bad_params = dict(spec, fault={"type": "network.latency", "params": {"proxy": "downstream"}})
    missing = one_line_error(scep_run(tmp_path, bad_params, "--server", server, "--token", token))
    assert "fault.params.latency_ms" in missing

    no_token = one_line_error(scep_run(tmp_path, spec, "--server", server))
    assert "SCEP_TOKEN" in no_token
    assert not Experiment.objects.filter(name="remote-bad").exists()
