"""Self-expiry for ``process.pause``: a tiny detached process that resumes paused targets.

A SIGSTOPped process stays stopped forever unless somebody sends SIGCONT. The agent
normally does that on revert, but the agent can be SIGKILLed, OOM-killed or lose its
host connection; the fault must still end at its expiry. So before pausing anything the
agent starts this module as its own session leader (``python -m
injectors.process.watchdog --at EPOCH --proc PID:CREATE_TIME ...``). It sleeps until
``--at`` and then resumes every listed process that is still the *same* process (pid and
create time match, so a recycled pid is never signalled), then exits.

SIGTERM means "revert has taken over": the watchdog exits at once without resuming,
because revert resumes the processes itself. The module deliberately imports nothing from
Django or the rest of SCEP, so it starts fast and cannot be broken by app configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterable, Sequence
from types import FrameType

import psutil

__all__ = [
    "CREATE_TIME_TOLERANCE",
    "MODULE",
    "is_same_process",
    "main",
    "parse_proc",
    "resume_all",
    "signal_if_same",
]

#: The ``-m`` name; revert also looks for it in a pid's command line before signalling it.
MODULE = "injectors.process.watchdog"

#: psutil derives create times from the kernel's boot time, which ``/proc/stat`` reports
#: in whole seconds and which may shift by a second when the clock is adjusted. A pid is
#: only reused after the pid space wraps, which cannot happen within such a window, so a
#: small tolerance costs no safety and avoids leaving a process stopped on a false mismatch.
CREATE_TIME_TOLERANCE = 1.5

#: Longest single sleep, so wall-clock jumps and vanished targets are noticed promptly.
_MAX_NAP = 0.5


def is_same_process(pid: int, create_time: float) -> bool:
    """True when ``pid`` still names the process that had ``create_time`` when recorded."""
    try:
        current = psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return abs(current - create_time) <= CREATE_TIME_TOLERANCE


def signal_if_same(pid: int, create_time: float, sig: int) -> bool:
    """Send ``sig`` only if ``pid`` is still the recorded process; False if it is gone.

    On Linux a pidfd is opened *before* the identity check, so the signal goes to exactly
    the process that was checked even if the pid is recycled in between. Elsewhere the
    plain ``kill`` leaves a tiny race, which the create-time check still narrows to
    practically nothing. PermissionError propagates: the caller decides how to report it.
    """
    if pid < 2:
        return False
    pidfd: int | None = None
    if hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal"):
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return False
        except OSError:
            pidfd = None  # old kernel or restricted sandbox: fall back to kill()
    try:
        if not is_same_process(pid, create_time):
            return False
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, sig)
        else:
            os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        if pidfd is not None:
            os.close(pidfd)


def resume_all(procs: Iterable[tuple[int, float]]) -> list[int]:
    """SIGCONT every still-identical process; return the pids that were signalled.

    A failure on one process must not stop the others from being resumed, so errors are
    swallowed here; there is nobody to report them to in a detached process anyway.
    """
    resumed = []
    for pid, create_time in procs:
        try:
            if signal_if_same(pid, create_time, signal.SIGCONT):
                resumed.append(pid)
        except OSError:
            continue
    return resumed


def parse_proc(text: str) -> tuple[int, float]:
    """Parse ``PID:CREATE_TIME`` (argparse ``type=``)."""
    pid_text, sep, ctime_text = text.partition(":")
    try:
        if not sep:
            raise ValueError
        pid, create_time = int(pid_text), float(ctime_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected PID:CREATE_TIME, got {text!r}") from None
    if pid < 2:
        raise argparse.ArgumentTypeError(f"refusing pid {pid}")
    return pid, create_time


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}",
        description="Resume (SIGCONT) the given processes at a deadline, then exit.",
    )
    parser.add_argument("--at", type=float, required=True, help="deadline, Unix epoch seconds")
    parser.add_argument(
        "--proc",
        type=parse_proc,
        action="append",
        required=True,
        metavar="PID:CREATE_TIME",
        help="a paused process; repeat for each",
    )
    parser.add_argument(
        "--ready-fd",
        type=int,
        default=None,
        help="write one byte to this fd once armed, so the injector knows it may pause",
    )
    return parser


def _exit_without_resuming(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _announce_ready(fd: int | None) -> None:
    if fd is None:
        return
    # If the injector died before reading, the write fails; we are armed regardless.
    with contextlib.suppress(OSError):
        os.write(fd, b"1")
    with contextlib.suppress(OSError):
        os.close(fd)


def _sleep_until(deadline: float, procs: Sequence[tuple[int, float]]) -> None:
    """Sleep in short naps until ``deadline``; return early once every target is gone."""
    while True:
        remaining = deadline - time.time()
        if remaining <= 0:
            return
        if not any(is_same_process(pid, ctime) for pid, ctime in procs):
            return
        time.sleep(min(remaining, _MAX_NAP))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    # Only SIGTERM (sent by revert) stops us early; stray terminal signals must not.
    signal.signal(signal.SIGTERM, _exit_without_resuming)
    for name in ("SIGINT", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    _announce_ready(args.ready_fd)
    _sleep_until(args.at, args.proc)
    resume_all(args.proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
