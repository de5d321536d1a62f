"""process.restart, and process.kill's respawn measurement, against real processes.

A "supervisor" here is a ten-line loop that restarts its child 0.3 s after it dies: the
smallest stand-in for systemd or a container runtime. Every process a test starts is
tracked by a fixture that kills it (and its process group) afterwards and then checks
that nothing carrying the test's marker is left running.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from injectors.base import InjectionContext, InjectionError, InvalidParams
from injectors.process.injectors import KillInjector, RestartInjector
from injectors.process.watchdog import signal_if_same
from tests.support.processes import wait_until

SLEEPER = "import time\nwhile True: time.sleep(0.05)"
STUBBORN = (
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "while True: time.sleep(0.05)"
)


def ignores_sigterm(pid: int) -> bool:
    """The kernel's view of the process's ignored signals (SigIgn in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


SUPERVISOR = f"""
import subprocess, sys, time
while True:
    child = subprocess.Popen([sys.executable, "-c", {SLEEPER!r}, "child-" + sys.argv[1]])
    child.wait()
    time.sleep(0.3)
"""

pytestmark = pytest.mark.slow


def make_ctx(expires_in: float = 30.0) -> InjectionContext:
    return InjectionContext(
        fault_id=None,
        target_name="test-target",
        target_config={},
        intensity=1.0,
        expires_at=time.time() + expires_in,
    )


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def marked(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"], ad_value=None):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any(marker in part for part in proc.info["cmdline"] or []):
            found.append(proc)
    return found


def wait_marked(pattern: str, timeout: float = 5.0) -> psutil.Process:
    """The first live process whose command line matches ``pattern``, once it exists."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        for proc in psutil.process_iter(["cmdline", "status"], ad_value=None):
            joined = " ".join(proc.info["cmdline"] or [])
            if proc.info["status"] != psutil.STATUS_ZOMBIE and regex.search(joined):
                return proc
        assert time.monotonic() < deadline, f"no process matching {pattern} appeared"
        time.sleep(0.02)


class Procs:
    """Processes a test started; each is killed with its whole group at teardown."""

    def __init__(self) -> None:
        self.marker = f"scep-test-{uuid.uuid4().hex}"
        self.popens: list[subprocess.Popen[bytes]] = []
        self.extra: list[tuple[int, float]] = []

    def start(self, source: str, *args: str, session: bool = False) -> subprocess.Popen[bytes]:
        popen = subprocess.Popen([sys.executable, "-c", source, *args], start_new_session=session)
        self.popens.append(popen)
        return popen

    def track(self, pid: int | None, create_time: float | None) -> None:
        if pid and create_time is not None:
            self.extra.append((pid, create_time))

    def cleanup(self) -> None:
        for pid, ctime in self.extra:
            with contextlib.suppress(OSError):
                signal_if_same(pid, ctime, signal.SIGKILL)
        for popen in self.popens:
            if popen.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    if os.getpgid(popen.pid) == popen.pid:
                        os.killpg(popen.pid, signal.SIGKILL)  # supervisor and its child
                    else:
                        popen.kill()
            popen.wait(timeout=5)
        from injectors.process import injectors as process_injectors

        process_injectors._reap_restarted()
        deadline = time.monotonic() + 3
        while marked(self.marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marked(self.marker) == [], "a test process was left running"


@pytest.fixture
def procs() -> Iterator[Procs]:
    tracker = Procs()
    try:
        yield tracker
    finally:
        tracker.cleanup()


# --------------------------------------------------------------------------- restart


def test_restart_stops_the_process_and_starts_the_command_as_a_new_pid(procs: Procs) -> None:
    old = procs.start(SLEEPER, procs.marker)
    wait_marked(re.escape(procs.marker))
    injector = RestartInjector()
    command = [sys.executable, "-c", SLEEPER, procs.marker]
    params = injector.validate({"cmdline": re.escape(procs.marker), "start_command": command})
    assert "would send SIGTERM to 1 of 1" in injector.dry_run(params, make_ctx())

    handle = injector.inject(params, make_ctx())
    procs.track(handle["new_pid"], handle["new_create_time"])
    json.dumps(handle)

    assert old.wait(timeout=3) == -signal.SIGTERM
    assert handle["pids"] == [old.pid] and handle["signal"] == "SIGTERM"
    assert handle["new_pid"] != old.pid and handle["start_exit_code"] is None
    assert handle["sigkilled"] == [] and handle["still_running"] == []
    new = psutil.Process(handle["new_pid"])
    assert new.cmdline() == command
    assert os.getsid(new.pid) == new.pid, "the command must run in its own session"

    injector.revert(handle, make_ctx())  # a restart is an event: nothing to undo
    injector.revert(handle, make_ctx())
    assert running(handle["new_pid"])


def test_restart_sigkills_a_process_that_ignores_the_stop_signal(procs: Procs) -> None:
    stubborn = procs.start(STUBBORN, procs.marker)
    wait_marked(re.escape(procs.marker))
    wait_until(lambda: ignores_sigterm(stubborn.pid), 10, "SIGTERM ignored by the child")
    injector = RestartInjector()
    params = injector.validate(
        {
            "pid": stubborn.pid,
            "stop_timeout_s": 0.3,
            "start_command": [sys.executable, "-c", SLEEPER, procs.marker],
        }
    )

    handle = injector.inject(params, make_ctx())
    procs.track(handle["new_pid"], handle["new_create_time"])

    assert stubborn.wait(timeout=3) == -signal.SIGKILL
    assert handle["sigkilled"] == [stubborn.pid]
    assert running(handle["new_pid"])


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["/nonexistent/scep-no-such-binary"], "could not start"),
        ([sys.executable, "-c", "raise SystemExit(3)"], "exited at once with status 3"),
    ],
)
def test_a_start_that_fails_is_reported_with_the_service_down(
    procs: Procs, command: list[str], message: str
) -> None:
    old = procs.start(SLEEPER, procs.marker)
    wait_marked(re.escape(procs.marker))
    injector = RestartInjector()
    params = injector.validate({"pid": old.pid, "start_command": command})
    with pytest.raises(InjectionError, match=f"{message}.*the service is now down"):
        injector.inject(params, make_ctx())
    assert old.wait(timeout=3) == -signal.SIGTERM


def test_restart_requires_a_start_command() -> None:
    injector = RestartInjector()
    with pytest.raises(InvalidParams, match="start_command"):
        injector.validate({"name": "x"})
    with pytest.raises(InvalidParams, match="start_command"):
        injector.validate({"name": "x", "start_command": []})
    assert (
        injector.validate({"name": "x", "start_command": ["true"], "stop_signal": 15})[
            "stop_signal"
        ]
        == "SIGTERM"
    )


# --------------------------------------------------------------------------- respawn


def test_kill_measures_how_long_a_supervisor_takes_to_respawn(procs: Procs) -> None:
    procs.start(SUPERVISOR, procs.marker, session=True)
    child_pattern = re.escape(f"child-{procs.marker}")
    first = wait_marked(child_pattern)
    injector = KillInjector()
    params = injector.validate(
        {"cmdline": child_pattern, "measure_respawn": True, "respawn_timeout_s": 5}
    )
    assert "records respawn_seconds" in injector.dry_run(params, make_ctx())

    handle = injector.inject(params, make_ctx())

    assert handle["pids"] == [first.pid]
    # The supervisor waits 0.3 s, then needs a moment to start Python.
    assert handle["respawn_seconds"] is not None
    assert 0.25 <= handle["respawn_seconds"] <= 4.0, handle["respawn_seconds"]
    assert handle["respawn_pid"] != first.pid
    assert running(handle["respawn_pid"])


def test_kill_without_a_supervisor_records_no_respawn(procs: Procs) -> None:
    target = procs.start(SLEEPER, procs.marker)
    wait_marked(re.escape(procs.marker))
    injector = KillInjector()
    params = injector.validate(
        {"cmdline": re.escape(procs.marker), "measure_respawn": True, "respawn_timeout_s": 0.5}
    )

    started = time.monotonic()
    handle = injector.inject(params, make_ctx())

    assert 0.5 <= time.monotonic() - started < 2.0, "the wait must be bounded"
    assert target.wait(timeout=3) == -signal.SIGKILL
    assert handle["respawn_seconds"] is None and handle["respawn_pid"] is None


def test_respawn_measurement_needs_a_selector_that_can_see_a_new_pid() -> None:
    with pytest.raises(InvalidParams, match="measure_respawn needs name, cmdline or process"):
        KillInjector().validate({"pid": 1234, "measure_respawn": True})
    # Without it, a plain kill keeps its old handle shape.
    assert "measure_respawn" in KillInjector().validate({"pid": 1234})
