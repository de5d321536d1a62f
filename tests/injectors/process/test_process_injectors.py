"""process.kill and process.pause against real child processes.

Every process a test starts (targets, watchdogs, helper injectors) is registered with a
fixture whose finalizer resumes and kills it, so a failing assertion never leaves a
stopped or orphaned process behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from injectors.base import InjectionContext, InjectionError, InvalidParams
from injectors.process.injectors import KillInjector, PauseInjector, parse_signal
from injectors.process.selectors import ProcessInfo, Selector, choose, find_matching
from injectors.process.watchdog import MODULE as WATCHDOG_MODULE
from injectors.process.watchdog import signal_if_same

ROOT = Path(__file__).resolve().parents[3]
SLEEPER = "import time\nwhile True: time.sleep(0.05)"
RUNNING = {psutil.STATUS_RUNNING, psutil.STATUS_SLEEPING}

pytestmark = pytest.mark.slow


def make_ctx(
    intensity: float = 1.0, expires_in: float = 30.0, target_config: dict | None = None
) -> InjectionContext:
    return InjectionContext(
        fault_id=None,
        target_name="test-target",
        target_config=target_config or {},
        intensity=intensity,
        expires_at=time.time() + expires_in,
    )


def status_of(pid: int) -> str:
    try:
        return psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return "gone"


def wait_for_status(pid: int, wanted: set[str], timeout: float = 3.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = status_of(pid)
        if status in wanted or time.monotonic() > deadline:
            return status
        time.sleep(0.02)


def is_finished(pid: int, create_time: float) -> bool:
    """Gone, or a zombie waiting for its (possibly new) parent to reap it."""
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - create_time) > 1.5 or (
            proc.status() == psutil.STATUS_ZOMBIE
        )
    except psutil.NoSuchProcess:
        return True


def wait_finished(pid: int, create_time: float, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not is_finished(pid, create_time):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class Sleepers:
    """Starts tagged sleeper processes; ``marker`` appears only in their command lines."""

    def __init__(self) -> None:
        self.marker = f"scep-test-{uuid.uuid4().hex}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.extra: list[tuple[int, float]] = []  # watchdogs, helpers: (pid, create_time)

    def start(self, count: int = 1) -> list[subprocess.Popen[bytes]]:
        new = [subprocess.Popen([sys.executable, "-c", SLEEPER, self.marker]) for _ in range(count)]
        self.procs.extend(new)
        for proc in new:  # wait until each has exec'd python, so its cmdline is final
            deadline = time.monotonic() + 5
            while self.marker not in " ".join(psutil.Process(proc.pid).cmdline()):
                assert time.monotonic() < deadline, "sleeper did not start"
                time.sleep(0.01)
        return new

    def track(self, pid: int | None, create_time: float | None) -> None:
        if pid and create_time is not None:
            self.extra.append((pid, create_time))

    def cleanup(self) -> None:
        for pid, ctime in self.extra:
            with contextlib.suppress(OSError):
                signal_if_same(pid, ctime, signal.SIGKILL)
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)
                    proc.kill()
            proc.wait(timeout=5)
        # Reap tracked watchdogs this process started (zombies until their parent waits).
        children = {child.pid: child for child in psutil.Process().children()}
        for pid, _ctime in self.extra:
            if pid in children:
                with contextlib.suppress(psutil.Error):
                    children[pid].wait(timeout=3)


@pytest.fixture
def sleepers() -> Iterator[Sleepers]:
    tracker = Sleepers()
    try:
        yield tracker
    finally:
        tracker.cleanup()


# --------------------------------------------------------------------------- kill


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_kill_by_pid_with_the_given_signal_ends_the_process(sleepers: Sleepers, sig: str) -> None:
    (target,) = sleepers.start()
    injector = KillInjector()
    params = injector.validate({"pid": target.pid, "signal": sig})

    handle = injector.inject(params, make_ctx())

    assert target.wait(timeout=3) == -parse_signal(sig)
    assert handle["pids"] == [target.pid]
    assert handle["signal"] == sig
    assert len(handle["create_times"]) == 1
    json.dumps(handle)  # the handle must be JSON-serialisable


def test_kill_by_cmdline_pattern_with_intensity_half_of_four_kills_exactly_two(
    sleepers: Sleepers,
) -> None:
    procs = sleepers.start(4)
    injector = KillInjector()
    params = injector.validate({"cmdline": re.escape(sleepers.marker)})

    handle = injector.inject(params, make_ctx(intensity=0.5))

    lowest_two = sorted(p.pid for p in procs)[:2]
    assert handle["pids"] == lowest_two
    for proc in procs:
        if proc.pid in lowest_two:
            assert proc.wait(timeout=3) == -signal.SIGKILL
    time.sleep(0.1)
    assert sorted(p.pid for p in procs if p.poll() is None) == sorted(p.pid for p in procs)[2:]


def test_kill_revert_is_a_documented_no_op(sleepers: Sleepers) -> None:
    (target,) = sleepers.start()
    injector = KillInjector()
    handle = injector.inject(injector.validate({"pid": target.pid}), make_ctx())
    target.wait(timeout=3)

    injector.revert(handle, make_ctx())
    injector.revert(handle, make_ctx())

    assert handle["revertible"] is False and "revert does nothing" in handle["note"]


def test_kill_accepts_short_names_and_numbers_and_normalises_them() -> None:
    injector = KillInjector()
    assert injector.validate({"pid": 1234, "signal": "TERM"})["signal"] == "SIGTERM"
    assert injector.validate({"pid": 1234, "signal": 9})["signal"] == "SIGKILL"
    assert injector.validate({"pid": 1234, "signal": "sigint"})["signal"] == "SIGINT"
    assert injector.validate({"pid": 1234})["signal"] == "SIGKILL"


def test_inject_with_no_matching_process_raises_a_clear_error() -> None:
    injector = KillInjector()
    params = injector.validate({"cmdline": f"no-such-process-{uuid.uuid4().hex}"})
    with pytest.raises(InjectionError, match="no process matches cmdline"):
        injector.inject(params, make_ctx())


# --------------------------------------------------------------------------- pause


def test_pause_stops_the_process_and_revert_resumes_it_and_reverting_twice_is_fine(
    sleepers: Sleepers,
) -> None:
    (target,) = sleepers.start()
    injector = PauseInjector()
    params = injector.validate({"pid": target.pid})

    handle = injector.inject(params, make_ctx(expires_in=30))
    sleepers.track(handle["watchdog_pid"], handle["watchdog_create_time"])

    assert wait_for_status(target.pid, {psutil.STATUS_STOPPED}) == psutil.STATUS_STOPPED
    assert handle["pids"] == [target.pid]
    assert handle["expires_at"] > time.time()
    watchdog = psutil.Process(handle["watchdog_pid"])
    assert WATCHDOG_MODULE in watchdog.cmdline()
    # The watchdog is never a candidate itself, even for a pattern that matches it.
    assert find_matching(Selector("cmdline", re.escape(WATCHDOG_MODULE))) == []

    injector.revert(handle, make_ctx())
    assert wait_for_status(target.pid, RUNNING) in RUNNING
    assert wait_finished(handle["watchdog_pid"], handle["watchdog_create_time"])

    injector.revert(handle, make_ctx())
    assert wait_for_status(target.pid, RUNNING) in RUNNING


def test_pause_self_expires_and_the_process_runs_again_without_any_revert(
    sleepers: Sleepers,
) -> None:
    (target,) = sleepers.start()
    injector = PauseInjector()
    ctx = make_ctx(expires_in=4.0)  # room for the watchdog's start on a loaded host

    handle = injector.inject(injector.validate({"pid": target.pid}), ctx)
    sleepers.track(handle["watchdog_pid"], handle["watchdog_create_time"])
    assert wait_for_status(target.pid, {psutil.STATUS_STOPPED}) == psutil.STATUS_STOPPED

    time.sleep(max(0.0, ctx.expires_at - time.time()))
    assert wait_for_status(target.pid, RUNNING, timeout=5) in RUNNING
    assert wait_finished(handle["watchdog_pid"], handle["watchdog_create_time"])


def test_revert_after_expiry_is_harmless(sleepers: Sleepers) -> None:
    (target,) = sleepers.start()
    injector = PauseInjector()
    ctx = make_ctx(expires_in=3.0)
    handle = injector.inject(injector.validate({"pid": target.pid}), ctx)
    sleepers.track(handle["watchdog_pid"], handle["watchdog_create_time"])
    assert wait_finished(handle["watchdog_pid"], handle["watchdog_create_time"], timeout=10)

    injector.revert(handle, ctx)
    injector.revert(handle, ctx)

    assert wait_for_status(target.pid, RUNNING) in RUNNING
    assert target.poll() is None


HELPER = """
import json, sys, time
from injectors.base import InjectionContext
from injectors.process.injectors import PauseInjector

injector = PauseInjector()
params = injector.validate({"pid": int(sys.argv[1])})
ctx = InjectionContext(None, "crash-test", {}, 1.0, float(sys.argv[2]))
print(json.dumps(injector.inject(params, ctx)), flush=True)
time.sleep(60)
"""


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "the helper printed no handle in time"
    return proc.stdout.readline()


def test_a_pause_outlives_a_sigkilled_injector_and_still_ends_at_expiry(
    sleepers: Sleepers,
) -> None:
    (target,) = sleepers.start()
    expires_at = time.time() + 6.0  # the helper's start-up and imports come out of this
    helper = subprocess.Popen(
        [sys.executable, "-c", HELPER, str(target.pid), repr(expires_at)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    sleepers.track(helper.pid, psutil.Process(helper.pid).create_time())
    try:
        handle = json.loads(read_line(helper, timeout=10))
        sleepers.track(handle["watchdog_pid"], handle["watchdog_create_time"])
        assert wait_for_status(target.pid, {psutil.STATUS_STOPPED}) == psutil.STATUS_STOPPED

        helper.kill()  # the injecting process dies without any chance to revert
        helper.wait(timeout=3)
    finally:
        if helper.stdout is not None:
            helper.stdout.close()

    watchdog = psutil.Process(handle["watchdog_pid"])
    assert watchdog.status() != psutil.STATUS_ZOMBIE, "the watchdog died with its parent"
    assert status_of(target.pid) == psutil.STATUS_STOPPED, "resumed before expiry"

    time.sleep(max(0.0, expires_at - time.time()))
    assert wait_for_status(target.pid, RUNNING, timeout=5) in RUNNING
    assert wait_finished(handle["watchdog_pid"], handle["watchdog_create_time"])


def test_an_expiry_that_passes_while_pausing_resumes_the_processes_and_fails(
    sleepers: Sleepers, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The watchdog fires (SIGCONT) and exits before the SIGSTOP is sent: nobody would
    # ever resume the process, so the injector must, and report the failure.
    import injectors.process.injectors as module

    (target,) = sleepers.start()
    ctx = make_ctx(expires_in=1.0)
    real_signal_all = module._signal_all

    def late_signal_all(chosen, sig):
        time.sleep(max(0.0, ctx.expires_at - time.time()) + 1.0)
        return real_signal_all(chosen, sig)

    monkeypatch.setattr(module, "_signal_all", late_signal_all)
    injector = PauseInjector()
    with pytest.raises(InjectionError, match="expired while"):
        injector.inject(injector.validate({"pid": target.pid}), ctx)
    assert wait_for_status(target.pid, RUNNING) in RUNNING


def test_pause_with_an_expiry_in_the_past_is_refused(sleepers: Sleepers) -> None:
    (target,) = sleepers.start()
    injector = PauseInjector()
    with pytest.raises(InjectionError, match="already passed"):
        injector.inject(injector.validate({"pid": target.pid}), make_ctx(expires_in=-1))
    assert status_of(target.pid) in RUNNING


# --------------------------------------------------------------------------- safety


def test_a_recycled_pid_with_a_different_create_time_is_not_signalled(
    sleepers: Sleepers,
) -> None:
    (target,) = sleepers.start()
    real_ctime = psutil.Process(target.pid).create_time()

    assert signal_if_same(target.pid, real_ctime - 1000, signal.SIGSTOP) is False
    time.sleep(0.1)
    assert status_of(target.pid) in RUNNING

    # Revert of a handle recorded for an older process with the same pid leaves ours alone.
    os.kill(target.pid, signal.SIGSTOP)
    assert wait_for_status(target.pid, {psutil.STATUS_STOPPED}) == psutil.STATUS_STOPPED
    stale = {"pids": [target.pid], "create_times": [real_ctime - 1000], "watchdog_pid": None}
    PauseInjector().revert(stale, make_ctx())
    time.sleep(0.1)
    assert status_of(target.pid) == psutil.STATUS_STOPPED


def test_revert_never_signals_a_pid_that_is_not_our_watchdog(sleepers: Sleepers) -> None:
    (bystander,) = sleepers.start()
    ctime = psutil.Process(bystander.pid).create_time()
    handle = {
        "pids": [],
        "create_times": [],
        "watchdog_pid": bystander.pid,  # right pid and create time, but not a watchdog
        "watchdog_create_time": ctime,
    }
    PauseInjector().revert(handle, make_ctx())
    time.sleep(0.1)
    assert bystander.poll() is None


@pytest.mark.parametrize("injector", [KillInjector(), PauseInjector()], ids=lambda i: i.name)
def test_pid_1_is_refused_at_validation(injector: Any) -> None:
    with pytest.raises(InvalidParams) as exc:
        injector.validate({"pid": 1})
    assert [e.path for e in exc.value.errors] == ["pid"]
    assert "refusing to signal pid 1" in str(exc.value)


@pytest.mark.parametrize("which", ["self", "parent"])
@pytest.mark.parametrize("injector", [KillInjector(), PauseInjector()], ids=lambda i: i.name)
def test_the_agent_itself_and_its_parent_are_refused_at_inject(injector: Any, which: str) -> None:
    pid = os.getpid() if which == "self" else os.getppid()
    params = injector.validate({"pid": pid})
    with pytest.raises(InjectionError, match=f"refusing to signal pid {pid}"):
        injector.inject(params, make_ctx())
    assert "inject would fail" in injector.dry_run(params, make_ctx())


def test_pattern_selection_never_includes_the_agent_or_its_ancestors() -> None:
    found = find_matching(Selector("cmdline", "."))
    pids = {p.pid for p in found}
    assert os.getpid() not in pids
    assert os.getppid() not in pids
    assert 1 not in pids


# --------------------------------------------------------------------------- validation


def field_errors(injector: Any, params: dict, target_config: dict | None = None) -> dict:
    with pytest.raises(InvalidParams) as exc:
        injector.validate(params, target_config)
    return {e.path: e.reason for e in exc.value.errors}


@pytest.mark.parametrize("params", [{}, {"pid": 1234, "name": "nginx"}])
def test_validation_requires_exactly_one_selector(params: dict) -> None:
    errors = field_errors(PauseInjector(), params)
    assert errors == {"": "exactly one of pid, name, cmdline, process is required"}


def test_validation_names_the_cmdline_field_for_a_bad_regex() -> None:
    errors = field_errors(KillInjector(), {"cmdline": "worker[("})
    assert errors["cmdline"].startswith("invalid regular expression: ")


def test_validation_names_the_signal_field_for_an_unknown_signal() -> None:
    assert (
        "unknown signal" in field_errors(KillInjector(), {"pid": 99, "signal": "SIGNOPE"})["signal"]
    )
    assert "unknown signal" in field_errors(KillInjector(), {"pid": 99, "signal": 999})["signal"]


def test_validation_rejects_unknown_fields_by_name() -> None:
    assert field_errors(PauseInjector(), {"pid": 99, "signal": "SIGKILL"}) == {
        "signal": "unknown field"
    }


def test_validation_names_an_unknown_process_entry_and_lists_the_defined_ones() -> None:
    config = {"processes": {"web": {"name": "nginx"}, "api": {"cmdline": "gunicorn"}}}
    errors = field_errors(KillInjector(), {"process": "x"}, config)
    assert errors == {"process": "unknown process 'x'; the target defines: api, web"}


def test_validation_reports_a_broken_process_entry_under_the_process_field() -> None:
    config = {"processes": {"api": {"cmdline": "gunicorn[("}}}
    errors = field_errors(PauseInjector(), {"process": "api"}, config)
    assert "invalid regular expression" in errors["process"]


def test_a_named_process_entry_resolves_through_the_target_config(sleepers: Sleepers) -> None:
    procs = sleepers.start(2)
    config = {"processes": {"worker": {"cmdline": re.escape(sleepers.marker)}}}
    injector = KillInjector()
    params = injector.validate({"process": "worker", "signal": "SIGTERM"}, config)

    handle = injector.inject(params, make_ctx(target_config=config))

    assert handle["pids"] == sorted(p.pid for p in procs)
    for proc in procs:
        assert proc.wait(timeout=3) == -signal.SIGTERM


# --------------------------------------------------------------------------- dry run


def test_dry_run_names_the_pids_it_would_signal_and_signals_nothing(sleepers: Sleepers) -> None:
    procs = sleepers.start(2)
    params = {"cmdline": re.escape(sleepers.marker), "signal": "SIGKILL"}
    kill = KillInjector()
    text = kill.dry_run(kill.validate(params), make_ctx())
    for proc in procs:
        assert str(proc.pid) in text
    assert "SIGKILL" in text

    pause = PauseInjector()
    text = pause.dry_run(pause.validate({"pid": procs[0].pid}), make_ctx())
    assert str(procs[0].pid) in text and "watchdog" in text

    time.sleep(0.1)
    assert all(p.poll() is None and status_of(p.pid) in RUNNING for p in procs)


def test_dry_run_says_when_nothing_matches() -> None:
    pause = PauseInjector()
    params = pause.validate({"name": f"no-such-{uuid.uuid4().hex[:6]}"})
    assert "no process currently matches name" in pause.dry_run(params, make_ctx())


def test_name_selection_matches_the_exact_process_name(sleepers: Sleepers) -> None:
    (target,) = sleepers.start()
    name = psutil.Process(target.pid).name()
    assert target.pid in {p.pid for p in find_matching(Selector("name", name))}
    assert target.pid not in {p.pid for p in find_matching(Selector("name", name[:-1]))}


# --------------------------------------------------------------------------- intensity


def _infos(count: int) -> list[ProcessInfo]:
    return [ProcessInfo(pid, "p", 0.0) for pid in range(100 + count, 100, -1)]


@pytest.mark.parametrize(
    ("intensity", "count", "expected"),
    [(0.5, 4, 2), (0.3, 10, 3), (0.0, 5, 1), (0.01, 5, 1), (1.0, 3, 3), (0.34, 3, 2)],
)
def test_intensity_picks_the_ceiling_share_of_lowest_pids(
    intensity: float, count: int, expected: int
) -> None:
    chosen = choose(_infos(count), intensity)
    assert [p.pid for p in chosen] == list(range(101, 101 + expected))


def test_choose_of_no_matches_is_empty() -> None:
    assert choose([], 1.0) == []
