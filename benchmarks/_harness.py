"""Shared set-up of the benchmarks that drive real platform processes: a throwaway data
folder, migrations, ``scep`` subprocesses, polling and a static HTTP server to probe.

The benchmarks run on whatever DATABASE_URL / CELERY_BROKER_URL say (the embedded
default when unset); the figures printed name the database and broker used.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def setup_django(prefix: str) -> Path:
    """A fresh SCEP_VAR_DIR (unless set), Django set up and migrated."""
    var = Path(os.environ.setdefault("SCEP_VAR_DIR", tempfile.mkdtemp(prefix=prefix)))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scep.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    return var


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(predicate: Callable[[], Any], timeout: float = 60.0, poll: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError("benchmark step timed out")


class Processes:
    """``scep`` subprocesses (and others), all stopped on exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def scep(self, *argv: str, **env: str) -> subprocess.Popen:
        return self.start([sys.executable, "-m", "scep", *argv], **env)

    def start(self, argv: list[str], cwd: Path | None = None, **env: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            argv,
            cwd=cwd or ROOT,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        return proc

    def agent(self, name: str) -> subprocess.Popen:
        from injectors.models import Agent

        proc = self.scep("agent", "--name", name)
        wait(lambda: Agent.objects.filter(name=name, pid=proc.pid).exists(), 60)
        return proc

    def static_server(self, folder: Path) -> str:
        """A threaded static HTTP server in its own process; returns a URL to probe."""
        import httpx

        folder.mkdir(parents=True, exist_ok=True)
        (folder / "index.html").write_text("ok\n")
        port = free_port()
        self.start([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                   cwd=folder)  # fmt: skip
        url = f"http://127.0.0.1:{port}/index.html"

        def up() -> bool:
            try:
                return httpx.get(url, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait(up, 20, 0.1)
        return url

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def backend() -> str:
    from django.conf import settings

    db = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    return f"{db}, {settings.CELERY_BROKER_URL.split('://')[0]} broker"


def placebo_spec(name: str, target: str, url: str, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "target": target,
        "fault": {"type": "control.placebo", "params": {}},
        "duration": 0.5,
        "baseline": 0.5,
        "recovery": 0.5,
        "interval": 0.25,
        "metrics": [{"name": "latency", "better": "lower", "measure": "latency_p50",
                     "probe": {"url": url, "requests": 1, "timeout": 2.0}}],
    }  # fmt: skip
    spec.update(overrides)
    return spec
