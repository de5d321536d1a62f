"""The pause watchdog run as its own process, exactly as the injector starts it."""

from __future__ import annotations

import argparse
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from injectors.process.watchdog import MODULE, parse_proc

ROOT = Path(__file__).resolve().parents[3]
SLEEPER = "import time\nwhile True: time.sleep(0.05)"
RUNNING = {psutil.STATUS_RUNNING, psutil.STATUS_SLEEPING}

pytestmark = pytest.mark.slow


def wait_for_status(pid: int, wanted: set[str], timeout: float = 3.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            status = psutil.Process(pid).status()
        except psutil.NoSuchProcess:
            status = "gone"
        if status in wanted or time.monotonic() > deadline:
            return status
        time.sleep(0.02)


class Procs:
    """Every process a test starts; the finalizer resumes and kills them all."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def sleeper(self, stopped: bool = False) -> tuple[int, float]:
        proc = subprocess.Popen([sys.executable, "-c", SLEEPER])
        self.started.append(proc)
        ctime = psutil.Process(proc.pid).create_time()
        if stopped:
            os.kill(proc.pid, signal.SIGSTOP)
            assert wait_for_status(proc.pid, {psutil.STATUS_STOPPED}) == psutil.STATUS_STOPPED
        return proc.pid, ctime

    def watchdog(self, *args: str, ready: bool = False) -> subprocess.Popen[bytes]:
        """Start the module; with ``ready`` wait until it has installed its handlers."""
        pass_fds: tuple[int, ...] = ()
        read_fd = write_fd = -1
        argv = [sys.executable, "-m", MODULE, *args]
        if ready:
            read_fd, write_fd = os.pipe()
            pass_fds = (write_fd,)
            argv += ["--ready-fd", str(write_fd)]
        proc = subprocess.Popen(argv, cwd=ROOT, pass_fds=pass_fds, start_new_session=True)
        self.started.append(proc)
        if ready:
            os.close(write_fd)
            try:
                assert select.select([read_fd], [], [], 10)[0], "watchdog never armed"
                assert os.read(read_fd, 1) == b"1"
            finally:
                os.close(read_fd)
        return proc

    def cleanup(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGCONT)
                    proc.kill()
                except ProcessLookupError:
                    pass
            proc.wait(timeout=5)


@pytest.fixture
def procs() -> Iterator[Procs]:
    tracker = Procs()
    try:
        yield tracker
    finally:
        tracker.cleanup()


def test_parse_proc_reads_pid_and_create_time() -> None:
    assert parse_proc("1234:1700000000.25") == (1234, 1700000000.25)


@pytest.mark.parametrize("text", ["1234", "abc:1.0", "1234:soon", "1:5.0", "0:5.0"])
def test_parse_proc_rejects_malformed_or_unsafe_values(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_proc(text)


def test_a_deadline_in_the_past_resumes_at_once_and_exits(procs: Procs) -> None:
    pid, ctime = procs.sleeper(stopped=True)
    watchdog = procs.watchdog("--at", str(time.time() - 10), "--proc", f"{pid}:{ctime!r}")
    assert watchdog.wait(timeout=5) == 0
    assert wait_for_status(pid, RUNNING) in RUNNING


def test_it_resumes_at_the_deadline_and_not_before(procs: Procs) -> None:
    pid, ctime = procs.sleeper(stopped=True)
    at = time.time() + 4.0  # the watchdog's own start-up comes out of this on a busy host
    watchdog = procs.watchdog("--at", repr(at), "--proc", f"{pid}:{ctime!r}", ready=True)
    assert wait_for_status(pid, RUNNING, timeout=0.3) == psutil.STATUS_STOPPED
    assert watchdog.wait(timeout=15) == 0
    assert time.time() >= at
    assert wait_for_status(pid, RUNNING) in RUNNING


def test_it_does_not_resume_a_pid_whose_create_time_differs(procs: Procs) -> None:
    pid, ctime = procs.sleeper(stopped=True)
    watchdog = procs.watchdog("--at", "0", "--proc", f"{pid}:{ctime - 500!r}")
    assert watchdog.wait(timeout=5) == 0
    time.sleep(0.1)
    assert wait_for_status(pid, set(), timeout=0) == psutil.STATUS_STOPPED


def test_sigterm_makes_it_exit_without_resuming(procs: Procs) -> None:
    pid, ctime = procs.sleeper(stopped=True)
    at = repr(time.time() + 30)
    watchdog = procs.watchdog("--at", at, "--proc", f"{pid}:{ctime!r}", ready=True)
    watchdog.send_signal(signal.SIGTERM)
    assert watchdog.wait(timeout=3) == 0
    assert wait_for_status(pid, set(), timeout=0) == psutil.STATUS_STOPPED


def test_it_exits_early_once_every_target_is_gone(procs: Procs) -> None:
    pid, ctime = procs.sleeper()
    at = repr(time.time() + 30)
    watchdog = procs.watchdog("--at", at, "--proc", f"{pid}:{ctime!r}", ready=True)
    os.kill(pid, signal.SIGKILL)
    procs.started[0].wait(timeout=3)
    assert watchdog.wait(timeout=3) == 0


def test_the_module_imports_no_django() -> None:
    code = f"import sys, {MODULE}; print(any(m.startswith('django') for m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
