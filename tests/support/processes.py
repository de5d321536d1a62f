"""Real platform processes for tests: agents and orchestrator workers as subprocesses.

They share the test database (file-based SQLite or the PostgreSQL test database) and a
broker private to the test session, so nothing leaks between test runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    """A URL for the database the tests are using right now (the test database)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    auth = f"{user}:{db['PASSWORD']}@" if db.get("PASSWORD") else (f"{user}@" if user else "")
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{db['NAME']}"


def reset_broker(broker_dir: Path) -> None:
    """Point this process's Celery app at a fresh broker and empty it."""
    from scep.celery import app

    url = settings.CELERY_BROKER_URL
    if url.startswith("filesystem://"):
        for sub in ("", "processed", "control"):
            (broker_dir / sub).mkdir(parents=True, exist_ok=True)
        app.conf.broker_transport_options = {
            **settings.CELERY_BROKER_TRANSPORT_OPTIONS,
            "data_folder_in": str(broker_dir),
            "data_folder_out": str(broker_dir),
            "processed_folder": str(broker_dir / "processed"),
            "control_folder": str(broker_dir / "control"),
        }
    elif url.startswith("redis"):
        import redis

        redis.Redis.from_url(url).flushdb()
    # Drop cached connections and producers so the next publish uses the options above.
    from kombu import pools

    pools.reset()
    if app._pool is not None:
        app._pool.force_close_all()
        app._pool = None
    app.amqp._producer_pool = None


class PlatformProcess:
    """A ``scep`` subcommand running in its own process, with its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path):
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scep", *args],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        # Children (e.g. the beat process of `worker --beat`) would outlive a parent that
        # had to be killed and keep writing to the test database: end the whole group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, poll: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def platform_env(broker_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url(),
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        SCEP_BROKER_DIR=str(broker_dir),
        SCEP_VAR_DIR=str(settings.VAR_DIR),
        DJANGO_SETTINGS_MODULE="scep.settings",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def round_trip_ms(url: str, n: int = 5) -> float:
    """Median round trip of ``n`` GETs: one slow scheduling hiccup must not decide."""
    import statistics

    import httpx

    times = []
    with httpx.Client(timeout=5) as client:
        for _ in range(n):
            started = time.perf_counter()
            client.get(url)
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)
