"""The ``scep`` command line: exit codes 0 / 1 / 2 and one readable line per error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from experiments.models import KillSwitch, Run
from scep.cli.main import main
from tests.support.processes import ROOT

EXAMPLE = ROOT / "experiments" / "examples" / "demo-latency.yaml"


def write_spec(tmp_path: Path, spec: dict, name: str = "spec.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def one_error_line(captured) -> str:
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("scep: error: ")
    return lines[0]


@pytest.mark.django_db
def test_validate_accepts_an_example_spec(capsys):
    assert main(["validate", str(EXAMPLE)]) == 0
    assert "valid" in capsys.readouterr().out


@pytest.mark.django_db
def test_validate_rejects_a_bad_spec_with_the_field_path_on_one_line(tmp_path, capsys):
    spec = yaml.safe_load(EXAMPLE.read_text())
    spec["fault"]["params"]["latency_ms"] = -5
    spec["intensity"] = 3
    assert main(["validate", write_spec(tmp_path, spec)]) == 2
    line = one_error_line(capsys.readouterr())
    assert "fault.params.latency_ms" in line and "intensity" in line


@pytest.mark.django_db
def test_a_missing_file_is_one_line_and_exit_2(capsys):
    assert main(["validate", "/nonexistent/spec.yaml"]) == 2
    assert "no such file" in one_error_line(capsys.readouterr())


@pytest.mark.django_db
def test_aborting_an_unknown_run_is_an_error(capsys):
    assert main(["abort", "999999"]) == 2
    assert "does not exist" in one_error_line(capsys.readouterr())


@pytest.mark.django_db(transaction=True)
def test_kill_switch_on_refuses_runs_and_off_releases(capsys, tmp_path):
    assert main(["kill-switch", "on", "--reason", "maintenance"]) == 0
    assert KillSwitch.get().engaged
    assert "engaged" in capsys.readouterr().out
    from experiments.services.catalog import create_target

    create_target(
        actor="t",
        source="system",
        name="demo",
        config={
            "proxies": {"downstream": {"listen": "127.0.0.1:19101", "upstream": "127.0.0.1:19100"}}
        },
    )
    assert main(["run", str(EXAMPLE)]) == 2
    assert "kill switch" in one_error_line(capsys.readouterr())
    assert main(["kill-switch", "off"]) == 0
    assert not KillSwitch.get().engaged


def test_a_bad_environment_variable_stops_start_up_naming_it():
    result = subprocess.run(
        [sys.executable, "-m", "scep", "validate", str(EXAMPLE)],
        env={"PATH": "/usr/bin:/bin", "SCEP_MAX_DURATION_S": "ten minutes"},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "SCEP_MAX_DURATION_S" in result.stderr


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_run_wait_exits_1_when_the_hypothesis_fails_and_0_when_it_holds(
    stack, start_worker, tmp_path, capsys
):
    start_worker()
    failing = stack.spec(name="cli-failing", duration=3, baseline=2, recovery=1)
    assert main(["run", write_spec(tmp_path, failing), "--wait", "--quiet"]) == 1
    holding = stack.spec(name="cli-holding", duration=3, baseline=2, recovery=1)
    holding["hypothesis"][0]["threshold"] = 5000
    assert main(["run", write_spec(tmp_path, holding, "ok.yaml"), "--wait", "--quiet"]) == 0
    assert list(Run.objects.values_list("verdict", flat=True).order_by("id")) == [
        "failed",
        "passed",
    ]


@pytest.mark.django_db(transaction=True)
def test_a_dry_run_describes_the_fault_and_injects_nothing(stack, start_worker, tmp_path):
    start_worker()
    spec = stack.spec(name="cli-dry")
    assert main(["run", write_spec(tmp_path, spec), "--dry-run", "--wait", "--quiet"]) == 0
    run = Run.objects.get()
    assert not run.faults.exists()
    assert any("dry run: would add 150 ms" in e.message for e in run.events.all())
