"""Starting, finding and stopping resource stressor processes (agent side).

A stressor is one detached process tree: the session leader is always
:mod:`injectors.resource.worker` (the built-in load, or a wrapper around ``stress-ng``),
started with ``start_new_session=True`` so neither the agent's death nor a terminal
signal ends it, and so every process it forks shares one session id: the leader's pid.

Revert finds the tree again from the handle alone, possibly in a new agent after a
crash. A process counts as ours only if it is in that session, was created no earlier
than the recorded leader, and carries the fault's random tag in its command line (the
worker and its forks) or is a ``stress-ng`` process (stress-ng rewrites its children's
command lines, so the tag cannot be seen there). A session id cannot be reused while
any member is alive, so these checks cannot match somebody else's processes; signals go
through :func:`~injectors.process.watchdog.signal_if_same` (pidfd plus create time), so
a pid recycled between the check and the signal is never hit either.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from injectors.base import InjectionError
from injectors.process.selectors import ProcessInfo
from injectors.process.watchdog import CREATE_TIME_TOLERANCE, is_same_process, signal_if_same
from injectors.resource.worker import MIB, MODULE

__all__ = [
    "BACKENDS",
    "Plan",
    "SpaceCheck",
    "check_space",
    "launch",
    "new_tag",
    "pick_backend",
    "remaining_seconds",
    "scaled",
    "session_members",
    "stop",
    "stress_ng_command",
    "worker_command",
]

BACKENDS = ("auto", "stress-ng", "builtin")
STRESS_NG = "stress-ng"

#: Tags are random and shaped, so a tampered handle cannot make revert delete arbitrary
#: paths: only paths whose name contains a well-formed tag are ever removed.
_TAG_RE = re.compile(r"^scep-[0-9a-f]{16}$")

#: The directory containing the ``injectors`` package, put on the worker's PYTHONPATH so
#: ``-m`` works whatever the agent's working directory or installation mode.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])

#: SIGTERM to the leader first (the worker cleans up, stress-ng removes its temp files);
#: whatever is left after this long is SIGKILLed. Longer than the worker's own grace.
_TERM_GRACE = 4.0
_KILL_GRACE = 2.0

#: Stressors started by this process, kept only so finished ones can be reaped: a child
#: that exits while the agent lives would otherwise linger as a zombie.
_started: list[subprocess.Popen[bytes]] = []


def reap() -> None:
    _started[:] = [p for p in _started if p.poll() is None]


def new_tag() -> str:
    return f"scep-{uuid.uuid4().hex[:16]}"


def scaled(amount: int, intensity: float) -> int:
    """``ceil(amount × intensity)``, at least 1; the epsilon absorbs float noise."""
    share = min(max(float(intensity), 0.0), 1.0)
    return max(1, math.ceil(amount * share - 1e-9))


def remaining_seconds(expires_at: float) -> float:
    left = float(expires_at) - time.time()
    if left <= 0:
        raise InjectionError("the fault's expiry has already passed; nothing was started")
    return left


def pick_backend(requested: str) -> str:
    """``auto`` prefers stress-ng when installed; asking for it explicitly requires it."""
    if requested == "builtin":
        return "builtin"
    if shutil.which(STRESS_NG):
        return STRESS_NG
    if requested == STRESS_NG:
        raise InjectionError(
            "backend stress-ng was requested but stress-ng is not installed on this host; "
            "use backend auto or builtin"
        )
    return "builtin"


@dataclass
class Plan:
    """What one inject will start: built-in worker arguments or a stress-ng command."""

    backend: str
    kind: str  # the worker kind: cpu, memory, fill, io (or exec for stress-ng)
    args: list[str]  # worker options for builtin; the stress-ng argv otherwise
    summary: str
    paths: list[str] = field(default_factory=list)  # removed on revert
    amounts: dict[str, Any] = field(default_factory=dict)  # recorded in the handle
    ready_timeout: float = 10.0


def stress_ng_command(args: list[str], expires_at: float) -> list[str]:
    """stress-ng's own timeout, as a backstop: whole seconds, rounded up."""
    timeout = max(1, math.ceil(float(expires_at) - time.time()))
    return [shutil.which(STRESS_NG) or STRESS_NG, *args, "--timeout", f"{timeout}s"]


def worker_command(
    plan: Plan, expires_at: float, tag: str, ready_fd: int | None = None
) -> list[str]:
    """The full argv of the session leader (``ready_fd`` None for display)."""
    kind = "exec" if plan.backend == STRESS_NG else plan.kind
    argv = [sys.executable, "-m", MODULE, kind, "--until", repr(float(expires_at)), "--tag", tag]
    if ready_fd is not None:
        argv += ["--ready-fd", str(ready_fd)]
    if plan.backend == STRESS_NG:
        return [*argv, "--", *stress_ng_command(plan.args, expires_at)]
    return [*argv, *plan.args]


def launch(plan: Plan, expires_at: float, tag: str) -> dict[str, Any]:
    """Start the stressor and wait until it reports its load in place; return the handle.

    On any failure the partial tree and its files are removed before raising, because no
    handle reaches the caller and so nobody else could revert it.
    """
    reap()
    remaining_seconds(expires_at)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
    read_fd, write_fd = os.pipe()
    popen: subprocess.Popen[bytes] | None = None
    try:
        argv = worker_command(plan, expires_at, tag, ready_fd=write_fd)
        try:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                close_fds=True,
                pass_fds=(write_fd,),
                start_new_session=True,  # own session: survives the agent, groups its tree
                cwd="/",
                env=env,
            )
        except OSError as exc:
            raise InjectionError(f"could not start the stressor: {exc}") from exc
        os.close(write_fd)
        write_fd = -1
        _started.append(popen)
        timeout = min(plan.ready_timeout, max(remaining_seconds(expires_at), 0.1))
        ready, _, _ = select.select([read_fd], [], [], timeout)
        message = os.read(read_fd, 4096) if ready else None
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    try:
        create_time = psutil.Process(popen.pid).create_time()
    except psutil.NoSuchProcess:
        create_time = time.time()
    handle = {
        "backend": plan.backend,
        "pids": [popen.pid],
        "create_times": [create_time],
        "tag": tag,
        "paths": list(plan.paths),
        "command": worker_command(plan, expires_at, tag),
        "expires_at": float(expires_at),
        **plan.amounts,
    }
    if message != b"1":
        stop(handle)
        if message is None:
            reason = f"it did not report ready within {timeout:.1f} s"
        elif not message:
            reason = f"it exited with status {popen.poll()}"
        else:
            reason = message[1:].decode(errors="replace") or "it reported a failure"
        raise InjectionError(f"the {plan.backend} stressor did not start: {reason}")
    members = session_members(popen.pid, create_time, tag)
    handle["pids"] = [popen.pid, *(m.pid for m in members if m.pid != popen.pid)]
    handle["create_times"] = [
        create_time,
        *(m.create_time for m in members if m.pid != popen.pid),
    ]
    return handle


def session_members(sid: int, leader_create_time: float, tag: str) -> list[ProcessInfo]:
    """Live (non-zombie) processes of the stressor's session that are provably ours.

    While the session leader lives it must be our tagged worker, or the whole session is
    somebody else's; once it is gone (SIGKILLed wrapper), stress-ng orphans still count.
    """
    if sid < 2:
        return []
    with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
        leader = psutil.Process(sid)
        if leader.status() != psutil.STATUS_ZOMBIE and tag not in " ".join(leader.cmdline()):
            return []
    found = []
    floor = float(leader_create_time) - CREATE_TIME_TOLERANCE
    for proc in psutil.process_iter(["name", "cmdline", "create_time", "status"], ad_value=None):
        info = proc.info
        if proc.pid < 2 or proc.pid == os.getpid() or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if os.getsid(proc.pid) != sid:
                continue
        except OSError:
            continue
        if info["create_time"] is None or info["create_time"] < floor:
            continue
        name = info["name"] or ""
        if tag in " ".join(info["cmdline"] or []) or name.startswith(STRESS_NG):
            found.append(ProcessInfo(proc.pid, name, info["create_time"]))
    return found


def _alive(procs: list[ProcessInfo]) -> list[ProcessInfo]:
    left = []
    for proc in procs:
        if not is_same_process(proc.pid, proc.create_time):
            continue
        with contextlib.suppress(psutil.Error):
            if psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE:
                left.append(proc)
    return left


def _wait_gone(procs: list[ProcessInfo], timeout: float) -> list[ProcessInfo]:
    deadline = time.monotonic() + timeout
    while True:
        reap()
        procs = _alive(procs)
        if not procs or time.monotonic() >= deadline:
            return procs
        time.sleep(0.02)


def _signal(procs: list[ProcessInfo], sig: signal.Signals) -> list[int]:
    denied = []
    for proc in procs:
        try:
            signal_if_same(proc.pid, proc.create_time, sig)
        except PermissionError:
            denied.append(proc.pid)
    return denied


def _remove_paths(paths: list[str], tag: str) -> None:
    for raw in paths:
        path = Path(raw)
        if tag not in path.name:
            raise InjectionError(f"malformed handle: refusing to remove {raw!r}")
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def stop(handle: dict[str, Any]) -> None:
    """Terminate the stressor's processes and remove its files. Idempotent.

    The leader gets SIGTERM first so it can stop its children and clean up in order;
    anything of ours still alive after the grace period is SIGKILLed. Files are removed
    last and unconditionally, in case the worker itself was SIGKILLed earlier.
    """
    tag = str(handle.get("tag") or "")
    if not _TAG_RE.match(tag):
        raise InjectionError("malformed handle: missing or invalid stressor tag")
    pids = [int(p) for p in handle.get("pids") or []]
    ctimes = [float(c) for c in handle.get("create_times") or []]
    if not pids or len(pids) != len(ctimes):
        raise InjectionError("malformed handle: pids and create_times missing or mismatched")
    leader = ProcessInfo(pids[0], "leader", ctimes[0])

    def ours() -> list[ProcessInfo]:
        # Only provably-ours processes, never the recorded pids as such: a forged or
        # corrupted handle must not be able to aim signals at arbitrary processes.
        return session_members(leader.pid, leader.create_time, tag)

    denied: list[int] = []
    members = ours()
    leaders = [m for m in members if m.pid == leader.pid]
    denied += _signal(leaders or members, signal.SIGTERM)
    left = _wait_gone(ours(), _TERM_GRACE)
    if left:
        denied += _signal(left, signal.SIGKILL)
        left = _wait_gone(left, _KILL_GRACE)
    reap()
    _remove_paths([str(p) for p in handle.get("paths") or []], tag)
    if left:
        raise InjectionError(
            "stressor process(es) still running after SIGKILL: "
            + ", ".join(str(p.pid) for p in left)
            + (f" (permission denied for {sorted(set(denied))})" if denied else "")
        )


@dataclass(frozen=True)
class SpaceCheck:
    """Free space under a path against a fill of ``needed`` bytes and a safety margin."""

    path: str
    total: int
    available: int
    needed: int
    margin: int

    @property
    def ok(self) -> bool:
        return self.available - self.needed >= self.margin

    def describe(self) -> str:
        return (
            f"{self.path}: {self.available // MIB} MiB of {self.total // MIB} MiB available; "
            f"writing {self.needed // MIB} MiB would leave "
            f"{(self.available - self.needed) // MIB} MiB, margin {self.margin // MIB} MiB"
        )


def check_space(path: str, needed: int, keep_free_percent: float, keep_free_mib: int) -> SpaceCheck:
    """Measure the filesystem holding ``path``; the margin is the larger of both limits.

    ``f_bavail`` is what an unprivileged writer may use, so the blocks reserved for root
    are never counted as free: the margin is on top of them.
    """
    target = Path(path)
    if not target.is_dir():
        raise InjectionError(f"path {path!r} is not an existing directory on this host")
    stats = os.statvfs(target)
    total = stats.f_blocks * stats.f_frsize
    margin = max(int(total * keep_free_percent / 100.0), keep_free_mib * MIB)
    return SpaceCheck(str(target), total, stats.f_bavail * stats.f_frsize, needed, margin)
