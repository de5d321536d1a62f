"""Fixtures shared by the database fault tests: contexts, a guard against helpers that
outlive their test, and a lock for tests that change server-wide Redis state.

Helpers are detached session leaders, so a failing test could otherwise leave one
holding a lock or a lowered ``maxmemory`` behind; the guard kills any helper started
during the test (and fails the test if one survived its revert or expiry).

The tree is shared, so two runs of this suite may overlap on the same servers. Helpers
inherit :data:`RUN_MARKER` through their environment and the guard only looks at this
run's helpers; tests that pause Redis or change ``maxmemory`` serialise on a host-wide
file lock so one run never records or restores the other's temporary values.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from injectors.base import InjectionContext
from injectors.database.helper import MODULE as HELPER_MODULE
from injectors.database.injectors import reap_helpers

#: Environment variable whose value tags every helper this test run starts.
RUN_MARKER = "SCEP_DBFAULTS_TEST_RUN"
os.environ.setdefault(RUN_MARKER, uuid.uuid4().hex)


def make_ctx(
    target_config: dict[str, Any], intensity: float = 1.0, expires_in: float = 30.0
) -> InjectionContext:
    return InjectionContext(
        fault_id=None,
        target_name="db-test",
        target_config=target_config,
        intensity=intensity,
        expires_at=time.time() + expires_in,
    )


def _ours(proc: psutil.Process) -> bool:
    try:
        return proc.environ().get(RUN_MARKER) == os.environ[RUN_MARKER]
    except psutil.Error:
        return False


def live_helpers(since: float) -> list[psutil.Process]:
    """This run's helper processes (not zombies) created at or after ``since``."""
    found = []
    for proc in psutil.process_iter(["cmdline", "create_time", "status"]):
        info = proc.info
        if (
            HELPER_MODULE in (info.get("cmdline") or [])
            and (info.get("create_time") or 0) >= since - 1
            and info.get("status") != psutil.STATUS_ZOMBIE
            and _ours(proc)
        ):
            found.append(proc)
    return found


def wait_no_helpers(since: float, timeout: float = 5.0) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while True:
        reap_helpers()
        left = live_helpers(since)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def helper_guard() -> Iterator[float]:
    """Yield the test's start time; afterwards kill and report any surviving helper."""
    started = time.time()
    yield started
    left = wait_no_helpers(started, timeout=1.0)
    for proc in left:
        try:
            proc.resume()
            proc.kill()
            proc.wait(3)
        except psutil.Error:
            pass
    reap_helpers()
    assert not left, f"helper process(es) left behind: {[p.pid for p in left]}"


@pytest.fixture
def redis_server_lock() -> Iterator[None]:
    """Hold a host-wide lock while a test changes server-wide Redis state.

    ``flock`` is released by the kernel if the holder dies, so a crashed run never blocks
    the next one.
    """
    path = os.path.join(tempfile.gettempdir(), "scep-dbfaults-redis-server.lock")
    with open(path, "a+") as handle:
        deadline = time.monotonic() + 120
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail("another run held the Redis server lock for 2 minutes")
                time.sleep(0.1)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(handle, fcntl.LOCK_UN)
