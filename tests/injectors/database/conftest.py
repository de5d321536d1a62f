"""Fixtures shared by the database fault tests: contexts and a guard against helpers
that outlive their test.

Helpers are detached session leaders, so a failing test could otherwise leave one
holding a lock or a lowered ``maxmemory`` behind; the guard kills any helper started
during the test (and fails the test if one survived its revert or expiry).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from injectors.base import InjectionContext
from injectors.database.helper import MODULE as HELPER_MODULE
from injectors.database.injectors import reap_helpers


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


def live_helpers(since: float) -> list[psutil.Process]:
    """Helper processes (not zombies) created at or after ``since``."""
    found = []
    for proc in psutil.process_iter(["cmdline", "create_time", "status"]):
        info = proc.info
        if (
            HELPER_MODULE in (info.get("cmdline") or [])
            and (info.get("create_time") or 0) >= since - 1
            and info.get("status") != psutil.STATUS_ZOMBIE
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
