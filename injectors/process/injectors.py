"""Process faults: ``process.kill`` (send a signal) and ``process.pause`` (SIGSTOP).

Both run inside the agent on the target's host and pick processes through
:mod:`injectors.process.selectors`. Every chosen process is recorded with its create time,
and every later signal goes through :func:`~injectors.process.watchdog.signal_if_same`,
so a pid recycled by the kernel in the meantime is never touched.

A kill cannot be undone, so its revert is a documented no-op. A pause must end even if
the agent dies, so it arms a detached watchdog *before* stopping anything.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from pydantic import field_validator

from injectors.base import InjectionContext, InjectionError, Injector
from injectors.process.selectors import (
    ProcessInfo,
    ProcessSelectorParams,
    resolve_selector,
    select_processes,
)
from injectors.process.watchdog import MODULE as WATCHDOG_MODULE
from injectors.process.watchdog import is_same_process, signal_if_same

__all__ = ["KillInjector", "KillParams", "PauseInjector", "PauseParams", "parse_signal"]

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


class KillParams(ProcessSelectorParams):
    """Selector plus the signal to send (normalised to its name, e.g. ``"SIGKILL"``)."""

    signal: str | int = "SIGKILL"

    @field_validator("signal")
    @classmethod
    def _known_signal(cls, value: str | int) -> str:
        return parse_signal(value).name


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
        return (
            f"{self.name}: would send {sig} to {_describe_choice(matches, chosen)} "
            f"[selected by {selector.describe()}]; not revertible"
        )

    def inject(self, params: dict[str, Any], ctx: InjectionContext) -> dict[str, Any]:
        sig = parse_signal(params.get("signal") or "SIGKILL")
        selector, _matches, chosen = select_processes(params, ctx.target_config, ctx.intensity)
        if not chosen:
            raise _no_match(selector.describe())
        done, skipped = _signal_all(chosen, sig)
        if not done:
            reasons = "; ".join(f"pid {s['pid']}: {s['reason']}" for s in skipped)
            raise InjectionError(f"could not send {sig.name} to any process: {reasons}")
        return {
            **_handle_lists(done),
            "signal": sig.name,
            "skipped": skipped,
            "revertible": False,
            "note": "a killed process cannot be restored; revert does nothing",
        }

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
