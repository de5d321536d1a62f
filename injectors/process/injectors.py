"""Process faults: ``process.kill`` (send a signal), ``process.pause`` (SIGSTOP) and
``process.restart`` (stop, then start a given command).

Both run inside the agent on the target's host and pick processes through
:mod:`injectors.process.selectors`. Every chosen process is recorded with its create time,
and every later signal goes through :func:`~injectors.process.watchdog.signal_if_same`,
so a pid recycled by the kernel in the meantime is never touched.

A kill cannot be undone, so its revert is a documented no-op; it can optionally measure
how long the target's supervisor takes to bring the process back. A pause must end even
if the agent dies, so it arms a detached watchdog *before* stopping anything. A restart
is an event, not a state, so its revert is a no-op as well.
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from pydantic import Field, field_validator, model_validator

from injectors.base import InjectionContext, InjectionError, Injector
from injectors.process.selectors import (
    ProcessInfo,
    ProcessSelectorParams,
    Selector,
    find_matching,
    resolve_selector,
    select_processes,
)
from injectors.process.watchdog import (
    CREATE_TIME_TOLERANCE,
    is_same_process,
    signal_if_same,
)
from injectors.process.watchdog import MODULE as WATCHDOG_MODULE

__all__ = [
    "KillInjector",
    "KillParams",
    "PauseInjector",
    "PauseParams",
    "RestartInjector",
    "RestartParams",
    "parse_signal",
]

#: How long inject waits for the watchdog to report itself armed before giving up.
WATCHDOG_READY_TIMEOUT = 10.0

#: The directory that contains the ``injectors`` package, put on the watchdog's path so
#: ``-m`` works whatever the agent's working directory or installation mode.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])

#: Watchdogs started by this process, kept only so finished ones can be reaped (a
#: detached child that exits while the agent lives would otherwise linger as a zombie).
_watchdogs: list[subprocess.Popen[bytes]] = []


def parse_signal(value: str | int) -> signal.Signals:
    """Accept ``"SIGKILL"``, ``"KILL"``, ``"kill"``, ``9`` or ``"9"``; raise ValueError."""
    if isinstance(value, bool):
        raise ValueError("must be a signal name or number")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int):
        try:
            return signal.Signals(value)
        except ValueError:
            raise ValueError(f"unknown signal number {value}") from None
    text = value.strip().upper()
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return signal.Signals[text]
    except KeyError:
        raise ValueError(f"unknown signal {value!r}") from None


#: Upper bound of every wait inside ``inject`` (respawn watch, stop timeout): inject runs
#: synchronously in the agent, which must stay responsive to reverts and the kill switch.
MAX_INJECT_WAIT_S = 120.0

#: How often the respawn watch looks for a new process; also its time resolution.
RESPAWN_POLL_S = 0.05


class KillParams(ProcessSelectorParams):
    """Selector plus the signal to send (normalised to its name, e.g. ``"SIGKILL"``).

    ``measure_respawn`` makes inject wait (at most ``respawn_timeout_s``, and never past
    the fault's expiry) for a *new* matching process to appear after the kill.
    """

    signal: str | int = "SIGKILL"
    measure_respawn: bool = False
    respawn_timeout_s: float = Field(10.0, gt=0.0, le=MAX_INJECT_WAIT_S)

    @field_validator("signal")
    @classmethod
    def _known_signal(cls, value: str | int) -> str:
        return parse_signal(value).name

    @model_validator(mode="after")
    def _respawn_needs_a_pattern(self) -> KillParams:
        if self.measure_respawn and self.pid is not None:
            raise ValueError(
                "measure_respawn needs name, cmdline or process: a respawned process has a "
                "new pid, so a pid selector can never see it come back"
            )
        return self


class RestartParams(ProcessSelectorParams):
    """Selector, how to stop the matches, and the command that starts the service again."""

    start_command: list[str] = Field(min_length=1)
    stop_signal: str | int = "SIGTERM"
    stop_timeout_s: float = Field(10.0, gt=0.0, le=MAX_INJECT_WAIT_S)
    cwd: str = "/"

    @field_validator("stop_signal")
    @classmethod
    def _known_signal(cls, value: str | int) -> str:
        return parse_signal(value).name

    @field_validator("start_command")
    @classmethod
    def _no_empty_program(cls, value: list[str]) -> list[str]:
        if not value[0]:
            raise ValueError("the program (first element) must not be empty")
        return value

    @field_validator("cwd")
    @classmethod
    def _absolute_cwd(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path")
        return value


class PauseParams(ProcessSelectorParams):
    """Only the selector: how long the pause lasts is the fault's ``expires_at``."""


def _check_target(params: dict[str, Any], target_config: dict[str, Any]) -> None:
    if params.get("process") is not None:
        resolve_selector(params, target_config)  # raises InvalidParams naming "process"


def _describe_choice(matches: list[ProcessInfo], chosen: list[ProcessInfo]) -> str:
    listed = ", ".join(f"pid {p.label()}" for p in chosen)
    return f"{len(chosen)} of {len(matches)} matching process(es): {listed}"


def _signal_all(chosen: list[ProcessInfo], sig: signal.Signals) -> tuple[list, list]:
    """Signal each process; return (signalled, skipped-with-reason)."""
    done: list[ProcessInfo] = []
    skipped: list[dict[str, Any]] = []
    for proc in chosen:
        try:
            if signal_if_same(proc.pid, proc.create_time, sig):
                done.append(proc)
            else:
                skipped.append({"pid": proc.pid, "reason": "exited before it was signalled"})
        except PermissionError:
            skipped.append({"pid": proc.pid, "reason": "permission denied"})
    return done, skipped


def _handle_lists(procs: list[ProcessInfo]) -> dict[str, list]:
    return {
        "pids": [p.pid for p in procs],
        "create_times": [p.create_time for p in procs],
        "names": [p.name for p in procs],
    }


def _no_match(selector_text: str) -> InjectionError:
    return InjectionError(
        f"no process matches {selector_text} (pid 1, the agent, its ancestors and SCEP "
        "watchdogs are never selected)"
    )


def _is_new(proc: ProcessInfo, known: set[tuple[int, float]]) -> bool:
    """Not one of the processes that matched before the kill (pid *and* create time)."""
    return not any(
        pid == proc.pid and abs(ctime - proc.create_time) <= CREATE_TIME_TOLERANCE
        for pid, ctime in known
    )


def _watch_respawn(
    selector: Selector, known: set[tuple[int, float]], killed_at: float, timeout: float
) -> dict[str, Any]:
    """Poll for a matching process that did not exist before the kill.

    Any process that matched before the kill (killed or spared by ``intensity``) is
    "known"; the first match outside that set is the respawn. The time is measured on
    the monotonic clock from the signal to the poll that saw it, so it is accurate to
    about ``RESPAWN_POLL_S`` (kernel create times are coarser and may shift with clock
    adjustments). Runs inside inject: the wait is bounded, and the handle carries the
    result to whoever reads the ledger.
    """
    deadline = killed_at + timeout
    while True:
        try:
            fresh = [p for p in find_matching(selector) if _is_new(p, known)]
        except InjectionError:
            fresh = []
        now = time.monotonic()
        if fresh:
            first = min(fresh, key=lambda p: p.create_time)
            return {
                "respawn_seconds": round(now - killed_at, 3),
                "respawn_pid": first.pid,
                "respawn_create_time": first.create_time,
                "respawn_timeout_s": timeout,
            }
        if now >= deadline:
            return {
                "respawn_seconds": None,
                "respawn_pid": None,
                "respawn_create_time": None,
                "respawn_timeout_s": timeout,
            }
        time.sleep(min(RESPAWN_POLL_S, max(deadline - now, 0.0)))


class KillInjector(Injector):
    """Send a signal (SIGKILL by default) to a share of the matching processes."""

    name = "process.kill"
    family = "process"
    summary = "Kill matching processes with a signal (SIGKILL by default); not revertible."
    params_model = KillParams

    def check_target(self, params: dict[str, Any], target_config: dict[str, Any]) -> None:
        _check_target(params, target_config)

    def dry_run(self, params: dict[str, Any], ctx: InjectionContext) -> str:
        sig = parse_signal(params.get("signal") or "SIGKILL").name
        try:
            selector, matches, chosen = select_processes(params, ctx.target_config, ctx.intensity)
        except InjectionError as exc:
            return f"{self.name}: inject would fail: {exc}"
        if not chosen:
            return f"{self.name}: no process currently matches {selector.describe()}"
        watch = ""
        if params.get("measure_respawn"):
            watch = (
                f"; then waits up to {float(params.get('respawn_timeout_s') or 10.0):g} s "
                "for a new matching process and records respawn_seconds"
            )
        return (
            f"{self.name}: would send {sig} to {_describe_choice(matches, chosen)} "
            f"[selected by {selector.describe()}]{watch}; not revertible"
        )

    def inject(self, params: dict[str, Any], ctx: InjectionContext) -> dict[str, Any]:
        sig = parse_signal(params.get("signal") or "SIGKILL")
        selector, matches, chosen = select_processes(params, ctx.target_config, ctx.intensity)
        if not chosen:
            raise _no_match(selector.describe())
        measure = bool(params.get("measure_respawn"))
        if measure and selector.kind == "pid":
            raise InjectionError(
                f"measure_respawn cannot follow {selector.describe()}: a respawned process "
                "has a new pid; select by name or cmdline"
            )
        done, skipped = _signal_all(chosen, sig)
        killed_at = time.monotonic()
        if not done:
            reasons = "; ".join(f"pid {s['pid']}: {s['reason']}" for s in skipped)
            raise InjectionError(f"could not send {sig.name} to any process: {reasons}")
        handle = {
            **_handle_lists(done),
            "signal": sig.name,
            "skipped": skipped,
            "revertible": False,
            "note": "a killed process cannot be restored; revert does nothing",
        }
        if measure:
            timeout = min(
                float(params.get("respawn_timeout_s") or 10.0), max(ctx.expires_at - time.time(), 0)
            )
            known = {(p.pid, p.create_time) for p in matches}
            handle.update(_watch_respawn(selector, known, killed_at, timeout))
        return handle

    def revert(self, handle: dict[str, Any], ctx: InjectionContext) -> None:
        """Nothing to undo: restarting a killed process is its supervisor's job."""
        return None


def _reap_watchdogs() -> None:
    _watchdogs[:] = [p for p in _watchdogs if p.poll() is None]


def _spawn_watchdog(expires_at: float, procs: list[ProcessInfo]) -> tuple[int, float]:
    """Start the detached watchdog and wait until it reports itself armed.

    Nothing is paused unless this returns: a watchdog that failed to start (bad
    interpreter, import error) would otherwise leave the targets stopped for good.
    """
    args = [sys.executable, "-m", WATCHDOG_MODULE, "--at", repr(float(expires_at))]
    for proc in procs:
        args += ["--proc", f"{proc.pid}:{proc.create_time!r}"]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
    read_fd, write_fd = os.pipe()
    try:
        args += ["--ready-fd", str(write_fd)]
        try:
            popen = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                close_fds=True,
                pass_fds=(write_fd,),
                start_new_session=True,  # own session: no terminal or group signals reach it
                cwd="/",
                env=env,
            )
        except OSError as exc:
            raise InjectionError(f"could not start the pause watchdog: {exc}") from exc
        os.close(write_fd)
        write_fd = -1
        ready, _, _ = select.select([read_fd], [], [], WATCHDOG_READY_TIMEOUT)
        armed = bool(ready) and os.read(read_fd, 1) == b"1"
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    if not armed:
        popen.kill()
        popen.wait()
        raise InjectionError("the pause watchdog did not start; nothing was paused")
    _watchdogs.append(popen)
    try:
        create_time = psutil.Process(popen.pid).create_time()
    except psutil.NoSuchProcess:
        raise InjectionError("the pause watchdog exited at once; nothing was paused") from None
    return popen.pid, create_time


def _is_our_watchdog(pid: int, create_time: float) -> bool:
    if not is_same_process(pid, create_time):
        return False
    try:
        return WATCHDOG_MODULE in psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _stop_watchdog(pid: int | None, create_time: float | None) -> None:
    """Terminate the watchdog if (and only if) it is still ours; reap it if it is our child."""
    if pid and create_time is not None and _is_our_watchdog(pid, create_time):
        try:
            signal_if_same(pid, create_time, signal.SIGTERM)
            psutil.Process(pid).wait(timeout=3)
        except psutil.TimeoutExpired:
            signal_if_same(pid, create_time, signal.SIGKILL)
        except (psutil.NoSuchProcess, ProcessLookupError, PermissionError):
            pass
    _reap_watchdogs()


class PauseInjector(Injector):
    """SIGSTOP a share of the matching processes until revert or expiry, whichever first."""

    name = "process.pause"
    family = "process"
    summary = "Freeze matching processes (SIGSTOP); a detached watchdog resumes them at expiry."
    params_model = PauseParams

    def check_target(self, params: dict[str, Any], target_config: dict[str, Any]) -> None:
        _check_target(params, target_config)

    def dry_run(self, params: dict[str, Any], ctx: InjectionContext) -> str:
        try:
            selector, matches, chosen = select_processes(params, ctx.target_config, ctx.intensity)
        except InjectionError as exc:
            return f"{self.name}: inject would fail: {exc}"
        if not chosen:
            return f"{self.name}: no process currently matches {selector.describe()}"
        at = datetime.fromtimestamp(ctx.expires_at, UTC).isoformat(timespec="seconds")
        return (
            f"{self.name}: would SIGSTOP {_describe_choice(matches, chosen)} "
            f"[selected by {selector.describe()}]; a detached watchdog resumes them at {at} "
            f"(in {ctx.expires_at - time.time():.1f} s) even if the agent dies"
        )

    def inject(self, params: dict[str, Any], ctx: InjectionContext) -> dict[str, Any]:
        _reap_watchdogs()
        if ctx.expires_at <= time.time():
            raise InjectionError("the fault's expiry has already passed; nothing to pause")
        selector, _matches, chosen = select_processes(params, ctx.target_config, ctx.intensity)
        if not chosen:
            raise _no_match(selector.describe())
        wd_pid, wd_ctime = _spawn_watchdog(ctx.expires_at, chosen)
        try:
            stopped, skipped = _signal_all(chosen, signal.SIGSTOP)
        except BaseException:
            # No handle will reach the caller, so nobody could revert: undo right here.
            for proc in chosen:
                with contextlib.suppress(OSError):
                    signal_if_same(proc.pid, proc.create_time, signal.SIGCONT)
            _stop_watchdog(wd_pid, wd_ctime)
            raise
        if not stopped:
            _stop_watchdog(wd_pid, wd_ctime)
            reasons = "; ".join(f"pid {s['pid']}: {s['reason']}" for s in skipped)
            raise InjectionError(f"could not stop any process: {reasons}")
        if time.time() >= ctx.expires_at or not _is_our_watchdog(wd_pid, wd_ctime):
            # The watchdog may already have sent its SIGCONT (the expiry came while we
            # were stopping) and left: nobody would resume these, so resume them now.
            for proc in stopped:
                with contextlib.suppress(OSError):
                    signal_if_same(proc.pid, proc.create_time, signal.SIGCONT)
            _stop_watchdog(wd_pid, wd_ctime)
            raise InjectionError("the fault expired while the processes were being paused")
        return {
            **_handle_lists(stopped),
            "signal": "SIGSTOP",
            "skipped": skipped,
            "watchdog_pid": wd_pid,
            "watchdog_create_time": wd_ctime,
            "expires_at": float(ctx.expires_at),
        }

    def revert(self, handle: dict[str, Any], ctx: InjectionContext) -> None:
        """Resume, then retire the watchdog: that order never leaves a process stopped.

        Every step tolerates processes that are gone or recycled, so calling this twice,
        after expiry, or after the agent restarted is harmless.
        """
        pids = handle.get("pids") or []
        ctimes = handle.get("create_times") or []
        if len(pids) != len(ctimes):
            raise InjectionError("malformed handle: pids and create_times differ in length")
        denied = []
        for pid, ctime in zip(pids, ctimes, strict=True):
            try:
                signal_if_same(int(pid), float(ctime), signal.SIGCONT)
            except PermissionError:
                denied.append(int(pid))
        _stop_watchdog(handle.get("watchdog_pid"), handle.get("watchdog_create_time"))
        if denied:
            raise InjectionError(
                f"could not resume pid(s) {', '.join(map(str, denied))}: permission denied"
            )


#: Commands started by ``process.restart``, kept only so they can be reaped should they
#: exit while the agent lives (they are the agent's children).
_restarted: list[subprocess.Popen[bytes]] = []

#: How long a freshly started command is watched: exiting non-zero within this window
#: means the start failed (bad path, crash on boot), which inject must report.
START_SETTLE_S = 0.3


def _reap_restarted() -> None:
    _restarted[:] = [p for p in _restarted if p.poll() is None]


def _stop_and_wait(
    chosen: list[ProcessInfo], sig: signal.Signals, timeout: float
) -> tuple[list[ProcessInfo], list[dict[str, Any]], list[int]]:
    """Signal, wait up to ``timeout``, SIGKILL stragglers; return (stopped, skipped, killed)."""
    done, skipped = _signal_all(chosen, sig)
    deadline = time.monotonic() + timeout
    forced: list[int] = []
    while True:
        left = [p for p in done if _still_running(p)]
        if not left:
            return done, skipped, forced
        if time.monotonic() >= deadline:
            if forced:  # already SIGKILLed and still there: give up waiting
                return done, skipped, forced
            for proc in left:
                with contextlib.suppress(PermissionError):
                    if signal_if_same(proc.pid, proc.create_time, signal.SIGKILL):
                        forced.append(proc.pid)
            deadline = time.monotonic() + 3.0
        time.sleep(0.02)


def _still_running(proc: ProcessInfo) -> bool:
    if not is_same_process(proc.pid, proc.create_time):
        return False
    try:
        return psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class RestartInjector(Injector):
    """Stop the matching processes, then start ``start_command`` detached.

    Revert is a documented no-op: a restart is an event, like a kill. Re-running the
    command at revert "if nothing is running" was considered and rejected: with a pid
    selector the new process can never match, so revert could not tell whether it had
    already started one, and two reverts would start two copies of the service.
    """

    name = "process.restart"
    family = "process"
    summary = "Stop matching processes (SIGTERM, then SIGKILL after a timeout) and start a command."
    params_model = RestartParams

    def check_target(self, params: dict[str, Any], target_config: dict[str, Any]) -> None:
        _check_target(params, target_config)

    def dry_run(self, params: dict[str, Any], ctx: InjectionContext) -> str:
        sig = parse_signal(params.get("stop_signal") or "SIGTERM").name
        command = shlex.join(params["start_command"])
        try:
            selector, matches, chosen = select_processes(params, ctx.target_config, ctx.intensity)
        except InjectionError as exc:
            return f"{self.name}: inject would fail: {exc}"
        if not chosen:
            return f"{self.name}: no process currently matches {selector.describe()}"
        return (
            f"{self.name}: would send {sig} to {_describe_choice(matches, chosen)} "
            f"[selected by {selector.describe()}], SIGKILL any still running after "
            f"{float(params.get('stop_timeout_s', 10.0)):g} s, then start `{command}` "
            f"detached (own session, cwd {params.get('cwd') or '/'}); not revertible"
        )

    def inject(self, params: dict[str, Any], ctx: InjectionContext) -> dict[str, Any]:
        _reap_restarted()
        sig = parse_signal(params.get("stop_signal") or "SIGTERM")
        command = [str(part) for part in params["start_command"]]
        selector, _matches, chosen = select_processes(params, ctx.target_config, ctx.intensity)
        if not chosen:
            raise _no_match(selector.describe())
        stopped, skipped, forced = _stop_and_wait(
            chosen, sig, float(params.get("stop_timeout_s", 10.0))
        )
        if not stopped:
            reasons = "; ".join(f"pid {s['pid']}: {s['reason']}" for s in skipped)
            raise InjectionError(f"could not stop any process: {reasons}; nothing was started")
        survivors = [p.pid for p in stopped if _still_running(p)]
        started_at = time.time()
        try:
            popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                close_fds=True,
                start_new_session=True,  # not tied to the agent's session or its signals
                cwd=params.get("cwd") or "/",
            )
        except OSError as exc:
            raise InjectionError(
                f"stopped pid(s) {', '.join(str(p.pid) for p in stopped)} but could not "
                f"start {shlex.join(command)}: {exc}; the service is now down"
            ) from exc
        _restarted.append(popen)
        try:
            code: int | None = popen.wait(timeout=START_SETTLE_S)
        except subprocess.TimeoutExpired:
            code = None
        if code not in (None, 0):
            raise InjectionError(
                f"stopped pid(s) {', '.join(str(p.pid) for p in stopped)} but "
                f"{shlex.join(command)} exited at once with status {code}; the service is now down"
            )
        try:
            new_ctime: float | None = psutil.Process(popen.pid).create_time()
        except psutil.NoSuchProcess:
            new_ctime = None
        return {
            **_handle_lists(stopped),
            "signal": sig.name,
            "skipped": skipped,
            "sigkilled": forced,
            "still_running": survivors,
            "start_command": command,
            "new_pid": popen.pid,
            "new_create_time": new_ctime,
            # A start command that daemonises (forks and exits 0) leaves no process to
            # record: new_pid then names the launcher, which is already gone.
            "start_exit_code": code,
            "started_at": started_at,
            "revertible": False,
            "note": "a restart is an event; revert does nothing",
        }

    def revert(self, handle: dict[str, Any], ctx: InjectionContext) -> None:
        """Nothing to undo; reaping the started command if it already exited is all."""
        _reap_restarted()
