"""Redis faults against the real server on 127.0.0.1:6379.

Data lives in db 14 under a random key prefix (db 15 belongs to other tests). The
server-wide settings a test may change (``maxmemory``, ``maxmemory-policy``, a client
pause) are recorded up front and put back by fixtures even when an assertion fails;
those tests hold a host-wide lock so overlapping runs of this suite cannot interleave.
Pauses are kept to a second or two because they affect every client of the server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from injectors.base import InjectionError, InvalidParams
from injectors.database.injectors import (
    RedisClientKillInjector,
    RedisClientPauseInjector,
    RedisMaxmemoryInjector,
)
from tests.injectors.database.conftest import make_ctx, wait_no_helpers

pytestmark = pytest.mark.slow

URL = "redis://127.0.0.1:6379/14"
ROOT = Path(__file__).resolve().parents[3]
CONFIG: dict[str, Any] = {"redis": {"url": URL}}


def client(**kwargs: Any) -> redis.Redis:
    kwargs.setdefault("socket_timeout", 5)
    return redis.Redis.from_url(URL, decode_responses=True, **kwargs)


@pytest.fixture
def key() -> Iterator[str]:
    name = f"scep-dbfaults-{uuid.uuid4().hex[:8]}"
    yield name
    with client() as c:
        c.delete(name)


@pytest.fixture
def memory_settings(redis_server_lock: None) -> Iterator[dict[str, str]]:
    """Record maxmemory and its policy; restore them whatever the test did."""
    with client() as c:
        saved = {k: c.config_get(k)[k] for k in ("maxmemory", "maxmemory-policy")}
    yield saved
    with client() as c:
        for k, v in saved.items():
            c.config_set(k, v)


@pytest.fixture
def unpause(redis_server_lock: None) -> Iterator[None]:
    """Serialise with other runs and make sure no pause outlives the test."""
    yield
    with client() as c:
        c.execute_command("CLIENT", "UNPAUSE")


# --- redis_client_pause --------------------------------------------------------------


def test_pause_write_blocks_writes_not_reads_until_revert(key: str, unpause: None) -> None:
    with client() as c:
        c.set(key, "before")
    inj = RedisClientPauseInjector()
    ctx = make_ctx(CONFIG, expires_in=5.0)
    handle = inj.inject(inj.validate({}), ctx)
    assert handle["mode"] == "WRITE" and 0 < handle["paused_ms"] <= 5000
    # Both clients give up well inside the 5 s pause, with room for a slow host.
    with client(socket_timeout=2) as reader:
        assert reader.get(key) == "before"
    with client(socket_timeout=1) as writer, pytest.raises(redis.TimeoutError):
        writer.set(key, "during")
    inj.revert(handle, make_ctx(CONFIG))
    with client() as writer:
        assert writer.set(key, "after")
    assert time.time() < ctx.expires_at, "the write waited for the pause to run out"
    inj.revert(handle, make_ctx(CONFIG))  # idempotent


def test_pause_ends_by_itself_at_expiry(key: str, unpause: None) -> None:
    inj = RedisClientPauseInjector()
    ctx = make_ctx(CONFIG, expires_in=2.0)
    handle = inj.inject(inj.validate({"mode": "write"}), ctx)
    with client(socket_timeout=15) as writer:
        assert writer.set(key, "x")  # waits for the server to lift the pause
    # Never before the expiry (50 ms for Redis' cached clock), and not much after it.
    assert ctx.expires_at - 0.05 <= time.time() < ctx.expires_at + 10
    inj.revert(handle, make_ctx(CONFIG))  # after expiry: no UNPAUSE is sent


# --- redis_client_kill ---------------------------------------------------------------


def ids_named(name: str) -> set[int]:
    with client() as c:
        return {int(e["id"]) for e in c.client_list() if e.get("name") == name}


def test_kill_by_type_spares_the_other_types() -> None:
    name = f"scep-kill-{uuid.uuid4().hex[:6]}"
    normal = client(client_name=name, single_connection_client=True)
    normal.ping()
    pubsub = client(client_name=name).pubsub()
    pubsub.subscribe(f"{name}-chan")
    pubsub.get_message(timeout=1)
    try:
        normal_id = int(normal.client_id())
        assert len(ids_named(name)) == 2
        inj = RedisClientKillInjector()
        handle = inj.inject(inj.validate({"type": "pubsub", "name": name}), make_ctx(CONFIG))
        assert len(handle["killed"]) == 1 and handle["killed"][0]["id"] != normal_id
        assert ids_named(name) == {normal_id}
        handle = inj.inject(inj.validate({"type": "normal", "name": name}), make_ctx(CONFIG))
        assert [k["id"] for k in handle["killed"]] == [normal_id]
        assert ids_named(name) == set()
        inj.revert(handle, make_ctx(CONFIG))  # documented no-op
    finally:
        pubsub.close()
        normal.close()


def test_kill_needs_a_filter_and_never_kills_itself() -> None:
    inj = RedisClientKillInjector()
    with pytest.raises(InvalidParams, match="at least one"):
        inj.validate({})
    # The injector's own connection is named scep-fault-inject: never selected.
    with pytest.raises(InjectionError, match="no client"):
        inj.inject(inj.validate({"name": "scep-fault-*"}), make_ctx(CONFIG))


# --- redis_maxmemory -----------------------------------------------------------------


def current() -> tuple[str, str]:
    with client() as c:
        return c.config_get("maxmemory")["maxmemory"], c.config_get("maxmemory-policy")[
            "maxmemory-policy"
        ]


def roomy_mib() -> int:
    with client() as c:
        used = int(c.info("memory")["used_memory"])
    return used // (1024 * 1024) + 64


def test_maxmemory_set_then_restored_exactly(
    memory_settings: dict[str, str], helper_guard: float
) -> None:
    before = current()
    inj = RedisMaxmemoryInjector()
    mib = roomy_mib()
    handle = inj.inject(inj.validate({"mib": mib, "policy": "volatile-lru"}), make_ctx(CONFIG))
    assert current() == (str(mib * 1024 * 1024), "volatile-lru")
    assert handle["old"] == {"maxmemory": int(before[0]), "policy": before[1]}
    inj.revert(handle, make_ctx(CONFIG))
    assert current() == before
    assert not wait_no_helpers(helper_guard)
    inj.revert(handle, make_ctx(CONFIG))  # idempotent
    assert current() == before


def test_maxmemory_refuses_evicting_limits(memory_settings: dict[str, str]) -> None:
    before = current()
    inj = RedisMaxmemoryInjector()
    params = inj.validate({"mib": 1, "policy": "allkeys-lru"})
    assert "refused" in inj.dry_run(params, make_ctx(CONFIG))
    with pytest.raises(InjectionError, match="allow_evictions"):
        inj.inject(params, make_ctx(CONFIG))
    assert current() == before


def test_maxmemory_restored_at_expiry_after_the_injector_is_sigkilled(
    memory_settings: dict[str, str], helper_guard: float
) -> None:
    before = current()
    mib = roomy_mib()
    script = textwrap.dedent(
        f"""
        import json, sys, time
        from injectors.base import InjectionContext
        from injectors.database.injectors import RedisMaxmemoryInjector
        inj = RedisMaxmemoryInjector()
        ctx = InjectionContext(None, "t", {CONFIG!r}, 1.0, time.time() + 5.0)
        print(json.dumps(inj.inject(inj.validate({{"mib": {mib}}}), ctx)), flush=True)
        time.sleep(60)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=ROOT, env=env, text=True
    )
    try:
        handle = json.loads(proc.stdout.readline())
        assert current()[0] == str(mib * 1024 * 1024)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert current()[0] == str(mib * 1024 * 1024)  # the fault outlives its injector ...
    # The expiry leaves the helper time to start under load; wait for its restore.
    deadline = handle["expires_at"] + 10
    while current() != before and time.time() < deadline:
        time.sleep(0.1)
    assert current() == before  # ... and is undone by the helper at expiry
    assert time.time() >= handle["expires_at"], "restored before the expiry"
    assert not wait_no_helpers(helper_guard)
    RedisMaxmemoryInjector().revert(handle, make_ctx(CONFIG))  # late revert: harmless
    assert current() == before
