"""Start and stop the demo services as child processes.

Subprocesses rather than threads because faults act on processes and sockets: the demo
must be killable, pausable and slowed down independently of the platform process.

Each child is started with port 0 by default and announces ``READY <url>``; we read the
real port from that line, which avoids the race of "find a free port, then bind it".
A service counts as started once its ``/healthz`` answers 200. Output is drained in a
background thread (a full pipe would block the child) and its tail is kept for error
messages. Every started process is also stopped at interpreter exit as a last resort, so
a crashed orchestrator or test run does not leave load generators behind.

Typical use with the fault proxy between target and downstream::

    def via_proxy(downstream_url: str) -> str:
        proxy = start_proxy(upstream=downstream_url)   # someone else's code
        return proxy.url

    demo = start_demo_services(downstream_via=via_proxy, loadgen_rps=20)
    ...
    demo.stop()
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = [
    "DemoServices",
    "DemoStartupError",
    "ServiceProcess",
    "start_demo_services",
    "start_downstream",
    "start_loadgen",
    "start_service",
    "start_target",
]

_REPO_ROOT = Path(__file__).resolve().parent.parent
_LIVE: weakref.WeakSet[ServiceProcess] = weakref.WeakSet()


class DemoStartupError(RuntimeError):
    """A demo service did not become healthy; the message includes its last output."""


class ServiceProcess:
    """A running demo service: its process, base URL and recent output."""

    def __init__(self, name: str, process: subprocess.Popen[str]):
        self.name = name
        self.process = process
        self.url: str | None = None
        self._lines: deque[str] = deque(maxlen=200)
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._drain, name=f"{name}-output", daemon=True)
        self._reader.start()
        _LIVE.add(self)

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip("\n")
            self._lines.append(line)
            if self.url is None and line.startswith("READY "):
                self.url = line.split(" ", 1)[1].strip()
                self._ready.set()
        self._ready.set()  # EOF: wake anyone waiting, they will see the process is gone

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        """The last lines the service printed (stdout and stderr)."""
        return "\n".join(self._lines)

    def wait_healthy(self, timeout: float) -> None:
        """Block until ``/healthz`` answers 200; stop the process and raise if it doesn't."""
        deadline = time.monotonic() + timeout
        self._ready.wait(timeout)
        last = "no READY line"
        with httpx.Client(timeout=0.5, trust_env=False) as client:
            while time.monotonic() < deadline:
                if not self.alive:
                    last = f"exited with code {self.process.returncode}"
                    break
                if self.url is not None:
                    try:
                        resp = client.get(self.url + "/healthz")
                        if resp.status_code == 200:
                            return
                        last = f"/healthz answered {resp.status_code}"
                    except httpx.HTTPError as exc:
                        last = f"/healthz failed: {exc}"
                time.sleep(0.05)
            else:
                last = f"not healthy within {timeout:g}s ({last})"
        self.stop()
        self._reader.join(timeout=1.0)
        raise DemoStartupError(f"demo {self.name} failed to start: {last}\n{self.output()}")

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit code."""
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5.0)
        self._reader.join(timeout=1.0)
        if self.process.stdout is not None:
            self.process.stdout.close()
        _LIVE.discard(self)
        return self.process.returncode

    def __repr__(self) -> str:
        state = "running" if self.alive else f"exited {self.process.returncode}"
        return f"ServiceProcess({self.name}, pid={self.pid}, url={self.url}, {state})"


def start_service(
    name: str, module: str, args: list[str], *, startup_timeout: float = 15.0
) -> ServiceProcess:
    """Run ``python -m <module> <args>`` and wait until it is healthy."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if p
    )
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=_REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    service = ServiceProcess(name, process)
    service.wait_healthy(startup_timeout)
    return service


def start_downstream(
    port: int = 0, *, delay_ms: float = 5.0, startup_timeout: float = 15.0
) -> ServiceProcess:
    """Start the dependency (``GET /data`` after ``delay_ms``); port 0 picks a free one."""
    return start_service(
        "downstream",
        "demo.downstream",
        ["--port", str(port), "--delay-ms", str(delay_ms)],
        startup_timeout=startup_timeout,
    )


def start_target(
    downstream_url: str, port: int = 0, *, startup_timeout: float = 15.0
) -> ServiceProcess:
    """Start the service under test, calling ``downstream_url`` (or a proxy in front)."""
    return start_service(
        "target",
        "demo.target",
        ["--port", str(port), "--downstream", downstream_url],
        startup_timeout=startup_timeout,
    )


def start_loadgen(
    url: str,
    *,
    rps: float = 20.0,
    duration: float = 0.0,
    workers: int = 4,
    status_port: int = 0,
    startup_timeout: float = 15.0,
) -> ServiceProcess:
    """Start the load generator; ``duration=0`` runs until :meth:`ServiceProcess.stop`."""
    return start_service(
        "loadgen",
        "demo.loadgen",
        [
            "--url", url,
            "--rps", str(rps),
            "--duration", str(duration),
            "--workers", str(workers),
            "--status-port", str(status_port),
        ],
        startup_timeout=startup_timeout,
    )  # fmt: skip


@dataclass
class DemoServices:
    """Handles of the running demo; :meth:`stop` ends them all, load generator first."""

    downstream: ServiceProcess
    target: ServiceProcess
    loadgen: ServiceProcess | None = None
    downstream_via: str | None = None

    @property
    def downstream_url(self) -> str:
        assert self.downstream.url is not None
        return self.downstream.url

    @property
    def target_url(self) -> str:
        assert self.target.url is not None
        return self.target.url

    @property
    def items_url(self) -> str:
        return self.target_url + "/api/items"

    @property
    def metrics_url(self) -> str:
        return self.target_url + "/metrics"

    @property
    def processes(self) -> list[ServiceProcess]:
        return [p for p in (self.loadgen, self.target, self.downstream) if p is not None]

    def stop(self, grace: float = 5.0) -> None:
        """Terminate every service (SIGKILL after ``grace``); safe to call twice."""
        for proc in self.processes:
            proc.stop(grace)

    def __enter__(self) -> DemoServices:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_demo_services(
    downstream_port: int = 0,
    target_port: int = 0,
    *,
    downstream_via: str | Callable[[str], str] | None = None,
    loadgen: bool = True,
    loadgen_rps: float = 20.0,
    loadgen_duration: float = 0.0,
    loadgen_status_port: int = 0,
    downstream_delay_ms: float = 5.0,
    startup_timeout: float = 15.0,
) -> DemoServices:
    """Start downstream, target (and optionally the load generator), all healthy.

    ``downstream_via`` is the URL the target should call instead of the downstream
    directly (the fault proxy), or a callable that receives the real downstream URL once
    it is known and returns that URL (handy with port 0). If anything fails, whatever was
    already started is stopped before the error propagates.
    """
    started: list[ServiceProcess] = []
    try:
        down = start_downstream(
            downstream_port, delay_ms=downstream_delay_ms, startup_timeout=startup_timeout
        )
        started.append(down)
        assert down.url is not None
        via = downstream_via(down.url) if callable(downstream_via) else downstream_via
        via = via or down.url
        target = start_target(via, target_port, startup_timeout=startup_timeout)
        started.append(target)
        gen = None
        if loadgen:
            gen = start_loadgen(
                f"{target.url}/api/items",
                rps=loadgen_rps,
                duration=loadgen_duration,
                status_port=loadgen_status_port,
                startup_timeout=startup_timeout,
            )
            started.append(gen)
    except BaseException:
        for proc in reversed(started):
            proc.stop(grace=2.0)
        raise
    return DemoServices(down, target, gen, via)


@atexit.register
def _stop_leftovers() -> None:
    for proc in list(_LIVE):
        proc.stop(grace=2.0)
