"""The four later TCP proxy faults (slicer, slow_close, limit_data, down), end to end.

Same approach as ``test_proxy.py``: a real threaded echo server behind a real
ProxyManager, and plain blocking sockets as the client, so timings and the way a
connection ends (EOF or RST) are what the application would really see.
"""

from __future__ import annotations

import itertools
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from injectors.base import InjectionContext, InvalidParams
from injectors.network.injectors import (
    DownInjector,
    LimitDataInjector,
    SlicerInjector,
    SlowCloseInjector,
)
from injectors.network.proxy import ProxyManager, ProxyRule
from injectors.registry import get_injector
from tests.support.processes import wait_until


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while data := self.request.recv(65536):
                self.request.sendall(data)
        except OSError:
            pass


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture(scope="module")
def echo() -> Iterator[tuple[str, int]]:
    server = _EchoServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def manager() -> Iterator[ProxyManager]:
    mgr = ProxyManager()
    mgr.start()
    yield mgr
    mgr.stop()


_names = itertools.count()


@pytest.fixture
def proxy(manager: ProxyManager, echo) -> Iterator[tuple[str, tuple[str, int]]]:
    name = f"a{next(_names)}"
    addr = manager.ensure_proxy(name, "127.0.0.1:0", f"{echo[0]}:{echo[1]}")
    yield name, addr
    manager.remove_proxy(name)


def rule(kind: str, rule_id: str = "r", ttl: float = 60.0, **fields: Any) -> ProxyRule:
    fields.setdefault("share", 1.0)
    return ProxyRule(id=rule_id, kind=kind, expires_at=time.time() + ttl, **fields)  # type: ignore[arg-type]


def connect(addr: tuple[str, int], timeout: float = 2.0) -> socket.socket:
    sock = socket.create_connection(addr, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_all(sock: socket.socket, n: int) -> list[bytes]:
    """Read ``n`` bytes, returning the pieces as recv() delivered them."""
    pieces: list[bytes] = []
    while sum(map(len, pieces)) < n:
        data = sock.recv(65536)
        if not data:
            break
        pieces.append(data)
    return pieces


def echoes(addr: tuple[str, int]) -> bool:
    """True if a fresh connection through the proxy echoes; False on a reset."""
    try:
        with connect(addr) as sock:
            sock.sendall(b"ping")
            return sock.recv(10) == b"ping"
    except ConnectionResetError:
        return False


def test_slicer_delivers_small_spaced_writes_in_order(manager, proxy):
    name, addr = proxy
    manager.set_rule(name, rule("slicer", size_bytes=20, size_variation=5, delay_us=10_000))
    payload = bytes(range(200))
    with connect(addr) as sock:
        start = time.perf_counter()
        sock.sendall(payload)
        pieces = recv_all(sock, len(payload))
        elapsed = time.perf_counter() - start
    assert b"".join(pieces) == payload
    assert max(map(len, pieces)) <= 25  # no write bigger than size + variation
    assert len(pieces) >= 8  # 200 bytes in slices of 15..25
    assert elapsed >= 0.07  # at least 7 gaps of 10 ms


def test_slicer_with_no_delay_only_cuts_and_applies_upstream_only_when_asked(manager, proxy):
    name, addr = proxy
    manager.set_rule(name, rule("slicer", direction="upstream", size_bytes=1))
    with connect(addr) as sock:
        sock.sendall(b"abcdef")
        assert b"".join(recv_all(sock, 6)) == b"abcdef"


def test_slow_close_delays_only_the_close_not_the_data(manager, proxy):
    name, addr = proxy
    # A delay long enough that "on time" and "delayed" stay apart on a busy host.
    manager.set_rule(name, rule("slow_close", close_delay_ms=800))
    with connect(addr, timeout=5) as sock:
        start = time.perf_counter()
        sock.sendall(b"bye")
        assert b"".join(recv_all(sock, 3)) == b"bye"
        assert time.perf_counter() - start < 0.6  # the data was not held for the delay
        sock.shutdown(socket.SHUT_WR)  # the echo server closes; its FIN is what waits
        closed_from = time.perf_counter()
        assert sock.recv(10) == b""
        assert time.perf_counter() - closed_from >= 0.75  # never early
        assert time.perf_counter() - start < 3.0  # held for the delay, not for good
    manager.remove_rule(name, "r")
    with connect(addr) as sock:
        sock.shutdown(socket.SHUT_WR)
        start = time.perf_counter()
        assert sock.recv(10) == b""
        assert time.perf_counter() - start < 0.6  # no longer delayed


def test_limit_data_closes_after_the_byte_budget(manager, proxy):
    name, addr = proxy
    manager.set_rule(name, rule("limit_data", limit_bytes=100))
    with connect(addr) as sock:
        sock.sendall(b"a" * 60)
        assert b"".join(recv_all(sock, 60)) == b"a" * 60
        sock.sendall(b"b" * 60)
        got = b"".join(recv_all(sock, 60))
        assert got == b"b" * 40  # 100 bytes in all, then EOF
        assert sock.recv(10) == b""
    stats = manager.stats(name)
    assert stats["connections_closed_by_fault"] == 1 and stats["bytes_dropped"] == 20


def test_limit_data_counts_from_when_the_rule_started(manager, proxy):
    name, addr = proxy
    with connect(addr) as sock:
        sock.sendall(b"x" * 500)
        assert len(b"".join(recv_all(sock, 500))) == 500
        manager.set_rule(name, rule("limit_data", limit_bytes=10, direction="upstream"))
        sock.sendall(b"y" * 30)
        # 10 bytes reach the echo server, then both sides are closed at once, so its
        # echo may or may not make it back before the client's EOF.
        got = b"".join(recv_all(sock, 30))
        assert got in (b"y" * n for n in range(11))
        assert sock.recv(10) == b""
    assert manager.stats(name)["bytes_upstream"] == 500 + 10


def test_down_resets_new_and_open_connections_until_removed(manager, proxy):
    name, addr = proxy
    with connect(addr) as open_sock:
        open_sock.sendall(b"hi")
        assert open_sock.recv(10) == b"hi"
        manager.set_rule(name, rule("down"))
        with pytest.raises(ConnectionResetError):
            open_sock.recv(10)
    assert not echoes(addr)
    assert manager.stats(name)["connections_refused"] >= 1
    manager.remove_rule(name, "r")
    assert echoes(addr)


def test_down_share_half_refuses_about_half_of_100_connections(manager, proxy):
    name, addr = proxy
    manager.set_rule(name, rule("down", share=0.5))
    refused = sum(not echoes(addr) for _ in range(100))
    # Binomial(100, 0.5): sd = 5, so ±4 sd is [30, 70].
    assert 30 <= refused <= 70, refused
    assert manager.stats(name)["connections_refused"] == refused


def test_new_kinds_expire_by_themselves(manager, proxy):
    name, addr = proxy
    down = rule("down", ttl=2.0)
    manager.set_rule(name, down)
    assert not echoes(addr)
    wait_until(lambda: echoes(addr), 10, "the rule to expire")
    assert time.time() >= down.expires_at  # not before its expiry
    assert manager.rules(name) == []


def test_rule_validation_for_the_new_kinds():
    for kind, fields, message in [
        ("slicer", {}, "size_bytes"),
        ("slicer", {"size_bytes": 10, "size_variation": 10}, "size_variation"),
        ("slow_close", {}, "close_delay_ms"),
        ("limit_data", {}, "limit_bytes"),
        ("limit_data", {"limit_bytes": -1}, "limit_bytes"),
    ]:
        with pytest.raises(ValueError, match=message):
            rule(kind, **fields)


# --- injectors -------------------------------------------------------------------------


def make_ctx(target_config: dict[str, Any], runtime: Any = None, **kw: Any) -> InjectionContext:
    kw.setdefault("fault_id", 3)
    kw.setdefault("intensity", 1.0)
    kw.setdefault("expires_at", time.time() + 60)
    return InjectionContext(target_name="shop", target_config=target_config, runtime=runtime, **kw)


def test_injectors_are_registered_and_validation_names_the_field():
    for name, cls in [
        ("network.slicer", SlicerInjector),
        ("network.slow_close", SlowCloseInjector),
        ("network.limit_data", LimitDataInjector),
        ("network.down", DownInjector),
    ]:
        assert isinstance(get_injector(name), cls)
    cases = [
        (SlicerInjector, {"proxy": "p", "size_bytes": 0}, "size_bytes"),
        (SlicerInjector, {"proxy": "p", "size_bytes": 8, "size_variation": 8}, "size_variation"),
        (SlicerInjector, {"proxy": "p", "size_bytes": 8, "delay_us": -1}, "delay_us"),
        (SlowCloseInjector, {"proxy": "p"}, "delay_ms"),
        (LimitDataInjector, {"proxy": "p", "bytes": -5}, "bytes"),
        (DownInjector, {"proxy": "p", "direction": "both"}, "direction"),
    ]
    for cls, params, path in cases:
        with pytest.raises(InvalidParams) as exc:
            cls().validate(params)
        assert [e.path for e in exc.value.errors] == [path], params
    assert DownInjector().validate({"proxy": "p"}) == {"proxy": "p"}


def test_dry_run_sentences_for_the_new_kinds():
    config = {"proxies": {"db": {"listen": "127.0.0.1:9401", "upstream": "127.0.0.1:9400"}}}
    ctx = make_ctx(config, intensity=0.5, expires_at=1_700_000_030)
    where = "on proxy 'db' (127.0.0.1:9401 → 127.0.0.1:9400) for 50% of connections until"
    texts = [
        SlicerInjector().dry_run(
            {"proxy": "db", "size_bytes": 64, "size_variation": 16, "delay_us": 500}, ctx
        ),
        SlowCloseInjector().dry_run({"proxy": "db", "delay_ms": 2000}, ctx),
        LimitDataInjector().dry_run({"proxy": "db", "bytes": 1000, "direction": "upstream"}, ctx),
        DownInjector().dry_run({"proxy": "db"}, ctx),
    ]
    assert texts == [
        "split downstream traffic into writes of 64 ± 16 bytes with 500 µs between them "
        f"{where} 22:13:50 UTC",
        f"delay the close (FIN) of downstream traffic by 2000 ms {where} 22:13:50 UTC",
        "close connections (FIN both ways) once 1000 bytes of upstream traffic have passed "
        f"{where} 22:13:50 UTC",
        f"answer new connections with a TCP RST and reset open ones {where} 22:13:50 UTC",
    ]


def test_down_injector_inject_revert_and_idempotence(echo):
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    config = {
        "proxies": {"db": {"listen": f"127.0.0.1:{port}", "upstream": f"{echo[0]}:{echo[1]}"}}
    }
    runtime = SimpleNamespace(proxies=ProxyManager())
    try:
        ctx = make_ctx(config, runtime)
        handle = DownInjector().inject({"proxy": "db"}, ctx)
        (applied,) = runtime.proxies.rules("shop/db")
        assert (applied.kind, applied.share, applied.expires_at) == ("down", 1.0, ctx.expires_at)
        assert not echoes(("127.0.0.1", port))
        DownInjector().revert(handle, ctx)
        DownInjector().revert(handle, ctx)
        assert echoes(("127.0.0.1", port))
        handle = LimitDataInjector().inject({"proxy": "db", "bytes": 2}, ctx)
        assert runtime.proxies.rules("shop/db")[0].limit_bytes == 2
        LimitDataInjector().revert(handle, ctx)
    finally:
        runtime.proxies.stop()
