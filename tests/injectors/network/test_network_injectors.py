"""The four network injectors: validation, dry-run text, inject/revert on a real proxy."""

from __future__ import annotations

import socket
import socketserver
import statistics
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from injectors.base import InjectionContext, InjectionError, InvalidParams
from injectors.network.injectors import (
    BandwidthInjector,
    BlackholeInjector,
    LatencyInjector,
    ResetPeerInjector,
)
from injectors.network.proxy import ProxyManager
from injectors.registry import get_injector


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        try:
            while data := self.request.recv(65536):
                self.request.sendall(data)
        except OSError:
            pass


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    server = _EchoServer(("127.0.0.1", 0), _EchoHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def runtime() -> Iterator[SimpleNamespace]:
    mgr = ProxyManager()
    mgr.start()
    yield SimpleNamespace(proxies=mgr)
    mgr.stop()


@pytest.fixture
def target_config(echo_port: int) -> dict[str, Any]:
    return {
        "proxies": {
            "downstream": {
                "listen": f"127.0.0.1:{_free_port()}",
                "upstream": f"127.0.0.1:{echo_port}",
            },
            "cache": {"listen": "127.0.0.1:9201", "upstream": "127.0.0.1:9200"},
        }
    }


def make_ctx(target_config: dict[str, Any], runtime: Any = None, **kw: Any) -> InjectionContext:
    kw.setdefault("fault_id", 7)
    kw.setdefault("intensity", 1.0)
    kw.setdefault("expires_at", time.time() + 60)
    return InjectionContext(target_name="shop", target_config=target_config, runtime=runtime, **kw)


def round_trip_ms(addr: tuple[str, int]) -> float:
    with socket.create_connection(addr, timeout=2) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = time.perf_counter()
        sock.sendall(b"ping")
        assert sock.recv(10) == b"ping"
        return (time.perf_counter() - start) * 1000


def round_trips(addr: tuple[str, int], n: int = 5) -> list[float]:
    """Several round trips: judge their median, so one scheduler stall cannot decide."""
    return [round_trip_ms(addr) for _ in range(n)]


def test_the_registry_resolves_all_four_network_fault_types():
    for name, cls in [
        ("network.latency", LatencyInjector),
        ("network.bandwidth", BandwidthInjector),
        ("network.reset_peer", ResetPeerInjector),
        ("network.blackhole", BlackholeInjector),
    ]:
        injector = get_injector(name)
        assert isinstance(injector, cls)
        assert injector.name == name and injector.family == "network"


def test_validate_names_the_bad_latency_field():
    with pytest.raises(InvalidParams) as exc:
        LatencyInjector().validate({"proxy": "downstream", "latency_ms": -5})
    assert [e.path for e in exc.value.errors] == ["latency_ms"]
    with pytest.raises(InvalidParams) as exc:
        LatencyInjector().validate({"proxy": "downstream", "latency_ms": 600_001})
    assert [e.path for e in exc.value.errors] == ["latency_ms"]


def test_validate_rejects_unknown_params_and_bad_direction():
    with pytest.raises(InvalidParams) as exc:
        LatencyInjector().validate({"proxy": "d", "latency_ms": 10, "latency": 10})
    assert [(e.path, e.reason) for e in exc.value.errors] == [("latency", "unknown field")]
    with pytest.raises(InvalidParams) as exc:
        BandwidthInjector().validate({"proxy": "d", "rate_kbps": 10, "direction": "sideways"})
    assert [e.path for e in exc.value.errors] == ["direction"]


def test_validate_fills_defaults():
    assert LatencyInjector().validate({"proxy": "d", "latency_ms": 10}) == {
        "proxy": "d",
        "direction": "downstream",
        "latency_ms": 10.0,
        "jitter_ms": 0.0,
    }
    assert BlackholeInjector().validate({"proxy": "d"})["close_after_ms"] is None
    assert ResetPeerInjector().validate({"proxy": "d"})["reset_after_ms"] == 0


def test_validate_against_the_target_names_an_unknown_proxy_and_lists_known_ones(target_config):
    with pytest.raises(InvalidParams) as exc:
        LatencyInjector().validate({"proxy": "x", "latency_ms": 10}, target_config)
    (error,) = exc.value.errors
    assert error.path == "proxy"
    assert error.reason == "unknown proxy 'x'; the target defines: cache, downstream"


def test_validate_against_a_target_without_proxies_says_so():
    with pytest.raises(InvalidParams) as exc:
        BlackholeInjector().validate({"proxy": "x"}, {"base_url": "http://x"})
    (error,) = exc.value.errors
    assert error.path == "proxy" and "no proxies" in error.reason


def test_dry_run_sentences_state_the_numbers(target_config):
    spec = target_config["proxies"]["downstream"]
    ctx = make_ctx(target_config, intensity=0.5, expires_at=1_700_000_030)  # 22:13:50 UTC
    text = LatencyInjector().dry_run(
        {"proxy": "downstream", "latency_ms": 300, "jitter_ms": 20}, ctx
    )
    assert text == (
        "add 300 ms (±20 ms) latency to downstream traffic on proxy 'downstream' "
        f"({spec['listen']} → {spec['upstream']}) "
        "for 50% of connections until 22:13:50 UTC"
    )
    assert "64 KiB/s" in BandwidthInjector().dry_run({"proxy": "cache", "rate_kbps": 64}, ctx)
    assert "250 ms after" in ResetPeerInjector().dry_run(
        {"proxy": "cache", "reset_after_ms": 250}, ctx
    )
    text = BlackholeInjector().dry_run(
        {"proxy": "cache", "close_after_ms": 1500, "direction": "both"}, ctx
    )
    assert "both directions" in text and "1500 ms" in text and "(127.0.0.1:9201 →" in text


def test_inject_and_revert_latency_through_a_real_proxy_manager(target_config, runtime):
    ctx = make_ctx(target_config, runtime)
    spec = target_config["proxies"]["downstream"]
    host, port = spec["listen"].split(":")
    injector = LatencyInjector()
    handle = injector.inject({"proxy": "downstream", "latency_ms": 80}, ctx)
    assert handle == {"proxy": "shop/downstream", "rule_id": "fault-7"}
    (rule,) = runtime.proxies.rules("shop/downstream")
    assert (rule.kind, rule.share, rule.latency_ms) == ("latency", 1.0, 80)
    assert rule.expires_at == ctx.expires_at
    delayed = round_trips((host, int(port)))
    assert min(delayed) >= 80 and statistics.median(delayed) < 160, delayed  # applied once
    injector.revert(handle, ctx)
    assert runtime.proxies.rules("shop/downstream") == []
    assert statistics.median(round_trips((host, int(port)))) < 40  # well under 80 ms
    injector.revert(handle, ctx)  # twice is fine


def test_revert_is_fine_when_the_proxy_is_gone(target_config, runtime):
    ctx = make_ctx(target_config, runtime)
    handle = BlackholeInjector().inject({"proxy": "downstream"}, ctx)
    runtime.proxies.remove_proxy("shop/downstream")
    BlackholeInjector().revert(handle, ctx)
    BlackholeInjector().revert({"proxy": "never-existed", "rule_id": "fault-1"}, ctx)


def test_inject_reset_peer_uses_the_intensity_as_share(target_config, runtime):
    ctx = make_ctx(target_config, runtime, intensity=0.25, fault_id=11)
    handle = ResetPeerInjector().inject({"proxy": "downstream", "reset_after_ms": 5}, ctx)
    (rule,) = runtime.proxies.rules("shop/downstream")
    assert (rule.id, rule.kind, rule.share, rule.reset_after_ms) == (
        "fault-11",
        "reset_peer",
        0.25,
        5,
    )
    ResetPeerInjector().revert(handle, ctx)


def test_inject_rejects_an_unknown_proxy_and_a_missing_runtime(target_config, runtime):
    with pytest.raises(InvalidParams):
        LatencyInjector().inject({"proxy": "x", "latency_ms": 1}, make_ctx(target_config, runtime))
    with pytest.raises(InjectionError, match=r"ctx\.runtime\.proxies"):
        LatencyInjector().inject({"proxy": "downstream", "latency_ms": 1}, make_ctx(target_config))


def test_inject_reports_a_taken_listen_port_clearly(target_config, runtime):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        target_config["proxies"]["downstream"]["listen"] = f"127.0.0.1:{port}"
        with pytest.raises(InjectionError, match="already in use"):
            LatencyInjector().inject(
                {"proxy": "downstream", "latency_ms": 1}, make_ctx(target_config, runtime)
            )
