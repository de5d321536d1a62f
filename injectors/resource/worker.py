"""The built-in stressor: one detached process that loads the host and ends by itself.

The agent starts ``python -m injectors.resource.worker KIND --until EPOCH --tag TAG ...``
as its own session leader. Whatever happens to the agent afterwards (SIGKILL, OOM kill,
lost broker), this process must stop at ``--until``: the fault's expiry is a promise the
platform makes to the people running the experiment. Three layers keep that promise:

* every loop compares the wall clock with ``--until`` at least every half second;
* ``signal.alarm`` is armed a little after the deadline, as a hard stop should a loop
  ever hang (the alarm is per process, so every forked child arms its own);
* ``exec`` mode wraps ``stress-ng``, whose own ``--timeout`` is whole seconds only, and
  stops it at the exact deadline; stress-ng's timeout remains as a backstop if this
  wrapper itself is killed.

Kinds: ``cpu`` (N forked busy loops with a duty cycle), ``memory`` (an anonymous mapping
written page by page so it is really resident), ``fill`` (one preallocated file, removed
at exit), ``io`` (N forked writers that write and fsync files in a loop) and ``exec``.

SIGTERM means "revert": stop the children, remove our files and exit. ``--ready-fd``
receives ``1`` once the load is in place, or ``0`` plus a message if setting it up failed,
so the injector can report a real failure instead of a silent no-op.

Like the pause watchdog, this module imports nothing from Django or the rest of SCEP, so
it starts fast and cannot be broken by the platform's configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import mmap
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

__all__ = ["MIB", "MODULE", "main"]

#: The ``-m`` name; revert looks for it (and the tag) before signalling anything.
MODULE = "injectors.resource.worker"

MIB = 1024 * 1024

#: Longest single sleep, so the deadline and a vanished child are noticed promptly.
_MAX_NAP = 0.5

#: Duty-cycle period of a CPU worker: short enough that ``load_percent`` looks smooth to
#: a sampling monitor, long enough that the scheduler overhead stays negligible.
_CPU_PERIOD = 0.1

#: How long ``exec`` watches the wrapped command before calling it started.
_EXEC_SETTLE = 0.3

#: How long children (forked workers, stress-ng) get to exit after SIGTERM.
_CHILD_GRACE = 3.0


class _Stop(Exception):
    """Raised by the signal handlers; unwinds to the cleanup in ``main``."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def _remaining(until: float) -> float:
    return until - time.time()


def _arm_alarm(until: float, slack: float) -> None:
    """Hard stop: SIGALRM ``slack`` seconds after the deadline (alarm takes whole seconds)."""
    signal.alarm(max(1, math.ceil(_remaining(until) + slack)))


def _sleep_until(until: float, alive: list[int] | None = None) -> None:
    """Nap until the deadline; return early when every forked child has exited."""
    while _remaining(until) > 0:
        if alive is not None:
            _reap(alive)
            if not alive:
                return
        time.sleep(min(_MAX_NAP, max(_remaining(until), 0.0)))


def _reap(pids: list[int]) -> None:
    for pid in list(pids):
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            pids.remove(pid)


def _stop_children(pids: list[int]) -> None:
    """SIGTERM our forked children, then SIGKILL whoever is left after the grace period.

    They are our unreaped children, so their pids cannot have been recycled.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + _CHILD_GRACE
        while pids and time.monotonic() < deadline:
            _reap(pids)
            time.sleep(0.02)
        if not pids:
            return


def _fork_workers(count: int, body: object, until: float) -> list[int]:
    """Fork ``count`` children running ``body(index, until)``; each exits via ``_exit``."""
    pids = []
    for index in range(count):
        pid = os.fork()
        if pid == 0:  # child: never return into the parent's code or cleanup
            code = 0
            try:
                if _ready_fd is not None:  # only the parent reports readiness
                    os.close(_ready_fd)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGALRM, signal.SIG_DFL)
                _arm_alarm(until, slack=1.0)
                body(index, until)  # type: ignore[operator]
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        pids.append(pid)
    return pids


# --------------------------------------------------------------------------- kinds


def _cpu_body(load_percent: int) -> object:
    busy = _CPU_PERIOD * load_percent / 100.0

    def run(index: int, until: float) -> None:
        # Busy time is counted in CPU time, not wall time: on a contended host a
        # wall-clock duty cycle would quietly deliver far less load than asked for.
        # The wall-clock period still bounds each burst, so the worker keeps sleeping.
        while _remaining(until) > 0:
            start, cpu_start = time.monotonic(), time.process_time()
            while time.process_time() - cpu_start < busy and time.monotonic() - start < _CPU_PERIOD:
                pass
            rest = _CPU_PERIOD - (time.monotonic() - start)
            if rest > 0:
                time.sleep(rest)

    return run


def _io_body(directory: Path, mib: int) -> object:
    chunk = os.urandom(MIB)  # incompressible, so compressing filesystems still do the I/O

    def run(index: int, until: float) -> None:
        path = directory / f"io-{index}.dat"
        while _remaining(until) > 0:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                for _ in range(mib):
                    if _remaining(until) <= 0:
                        break
                    os.write(fd, chunk)
                os.fsync(fd)
            finally:
                os.close(fd)

    return run


def _touch_memory(mib: int) -> mmap.mmap:
    """Map ``mib`` MiB and write every page, so the kernel must really back it.

    A fresh anonymous mapping (or a large zeroed bytearray) costs no RAM until written;
    a non-zero pattern also keeps it from being shared with the kernel's zero page.
    """
    region = mmap.mmap(-1, mib * MIB, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    pattern = b"\xa5" * MIB
    for offset in range(0, mib * MIB, MIB):
        region[offset : offset + MIB] = pattern
    return region


def _available(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def _fill_file(path: Path, mib: int, keep_free: int) -> None:
    """Create ``path`` (never an existing file) holding ``mib`` MiB of real blocks.

    ``posix_fallocate`` reserves the blocks at once; where the filesystem cannot, we
    write, re-checking free space before each chunk because other writers may be filling
    the disk at the same time and the safety margin matters more than the exact size.
    """
    size = mib * MIB
    if _available(path.parent) - size < keep_free:
        raise OSError(f"filling {mib} MiB would leave less than {keep_free // MIB} MiB free")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.posix_fallocate(fd, 0, size)
            return
        except OSError:
            os.ftruncate(fd, 0)  # unsupported here: fall back to writing real data
        chunk = os.urandom(MIB)  # zeros would take no space on a compressing filesystem
        for _ in range(mib):
            if _available(path.parent) - MIB < keep_free:
                raise OSError("free space fell to the safety margin while filling")
            os.write(fd, chunk)
        os.fsync(fd)
    finally:
        os.close(fd)


def _exec_wrapped(command: list[str], until: float) -> None:
    """Run ``command`` (stress-ng) in our session and stop it at the exact deadline."""
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, close_fds=True)
    try:
        # A bad option makes stress-ng exit at once; report that instead of "ready".
        with contextlib.suppress(subprocess.TimeoutExpired):
            code = child.wait(timeout=min(_EXEC_SETTLE, max(_remaining(until), 0.0)))
            if _remaining(until) > 0:
                _announce(b"0" + f"{command[0]} exited at once with status {code}".encode())
                return
        _announce(b"1")
        while _remaining(until) > 0 and child.poll() is None:
            time.sleep(min(_MAX_NAP, max(_remaining(until), 0.0)))
    finally:
        if child.poll() is None:
            child.terminate()  # stress-ng stops its workers and removes its temp files
            try:
                child.wait(timeout=_CHILD_GRACE)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


# --------------------------------------------------------------------------- plumbing

_ready_fd: int | None = None


def _announce(message: bytes) -> None:
    """Tell the injector how setup went (once); it may have died, which is fine."""
    global _ready_fd
    if _ready_fd is None:
        return
    with contextlib.suppress(OSError):
        os.write(_ready_fd, message[:4000])
    with contextlib.suppress(OSError):
        os.close(_ready_fd)
    _ready_fd = None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}", description="Load the host until a deadline, then exit."
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--until", type=float, required=True, help="deadline, Unix epoch")
    common.add_argument("--tag", required=True, help="identifies this fault's processes")
    common.add_argument("--ready-fd", type=int, default=None)
    kinds = parser.add_subparsers(dest="kind", required=True)
    cpu = kinds.add_parser("cpu", parents=[common])
    cpu.add_argument("--workers", type=int, required=True)
    cpu.add_argument("--load", type=int, required=True, help="duty cycle, percent")
    memory = kinds.add_parser("memory", parents=[common])
    memory.add_argument("--mib", type=int, required=True)
    fill = kinds.add_parser("fill", parents=[common])
    fill.add_argument("--file", type=Path, required=True)
    fill.add_argument("--mib", type=int, required=True)
    fill.add_argument("--keep-free-bytes", type=int, required=True)
    io = kinds.add_parser("io", parents=[common])
    io.add_argument("--dir", type=Path, required=True)
    io.add_argument("--workers", type=int, required=True)
    io.add_argument("--mib", type=int, required=True)
    wrapped = kinds.add_parser("exec", parents=[common])
    wrapped.add_argument("command", nargs=argparse.REMAINDER)
    return parser


def _run(args: argparse.Namespace, children: list[int]) -> None:
    until = args.until
    if args.kind == "cpu":
        children += _fork_workers(args.workers, _cpu_body(args.load), until)
        _announce(b"1")
        _sleep_until(until, children)
    elif args.kind == "memory":
        region = _touch_memory(args.mib)
        _announce(b"1")
        _sleep_until(until)
        region.close()
    elif args.kind == "fill":
        _fill_file(args.file, args.mib, args.keep_free_bytes)
        _announce(b"1")
        _sleep_until(until)
    elif args.kind == "io":
        args.dir.mkdir(mode=0o700, exist_ok=True)
        children += _fork_workers(args.workers, _io_body(args.dir, args.mib), until)
        _announce(b"1")
        _sleep_until(until, children)
    else:
        command = [c for c in args.command if c != "--"]
        if not command:
            raise ValueError("exec needs a command")
        _exec_wrapped(command, until)


def _cleanup(args: argparse.Namespace) -> None:
    """Remove what this fault created; revert does the same in case we were SIGKILLed."""
    if args.kind == "fill":
        with contextlib.suppress(FileNotFoundError):
            args.file.unlink()
    elif args.kind == "io":
        shutil.rmtree(args.dir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 also when stopped by revert or alarm)."""
    global _ready_fd
    args = _parser().parse_args(argv)
    _ready_fd = args.ready_fd
    # SIGTERM (revert) and our own alarm unwind through the cleanup below; terminal
    # signals must not end a fault early, since the process is detached on purpose.
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGALRM, _raise_stop)
    for name in ("SIGINT", "SIGHUP"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    if _remaining(args.until) <= 0:
        _announce(b"0the deadline has already passed")
        return 1
    # The wrapper must outlive stress-ng's own grace period; the rest need little slack.
    _arm_alarm(args.until, slack=_CHILD_GRACE + 2.0 if args.kind == "exec" else 2.0)
    children: list[int] = []
    status = 0
    try:
        _run(args, children)
    except _Stop:
        pass
    except Exception as exc:
        _announce(b"0" + f"{type(exc).__name__}: {exc}".encode(errors="replace"))
        status = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish cleaning up regardless
        signal.alarm(0)
        _stop_children(children)
        _cleanup(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
