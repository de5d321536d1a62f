"""The DNS fault responder and its injectors, with a real local upstream resolver.

The upstream is a second, tiny dnspython responder on 127.0.0.1 serving fixed A
records (never the internet), and the client is ``dns.query``, so what is measured is
what a stub resolver in the application would get back.
"""

from __future__ import annotations

import itertools
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from injectors.base import InjectionContext, InjectionError, InvalidParams
from injectors.dns.injectors import DnsDelayInjector, NxdomainInjector, ServfailInjector
from injectors.dns.server import DnsManager, DnsRule, name_matches, wanted_dns_responders
from injectors.http.proxy import HttpProxyManager, wanted_http_proxies
from injectors.registry import get_injector
from tests.support.processes import wait_until

RECORDS = {
    "api.test.": "10.0.0.1",
    "db.test.": "10.0.0.2",
    "svc.test.": "10.0.0.3",
    "a.svc.test.": "10.0.0.4",
    "x.y.svc.test.": "10.0.0.5",
}


class _Upstream:
    """A fixed-zone UDP responder in a thread: A records from RECORDS, else NXDOMAIN."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.address = self.sock.getsockname()
        self.queries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            self.queries += 1
            reply = dns.message.make_response(query)
            reply.flags |= dns.flags.AA
            question = query.question[0]
            address = RECORDS.get(question.name.to_text().lower())
            if address is None:
                reply.set_rcode(dns.rcode.NXDOMAIN)
            elif question.rdtype == dns.rdatatype.A:
                reply.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", address))
            self.sock.sendto(reply.to_wire(), peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)
        self.sock.close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[_Upstream]:
    server = _Upstream()
    yield server
    server.close()


@pytest.fixture(scope="module")
def manager() -> Iterator[DnsManager]:
    mgr = DnsManager()
    mgr.start()
    yield mgr
    mgr.stop()


_names = itertools.count()


@pytest.fixture
def responder(manager: DnsManager, upstream) -> Iterator[tuple[str, tuple[str, int]]]:
    name = f"d{next(_names)}"
    host, port = upstream.address
    addr = manager.ensure_proxy(name, "127.0.0.1:0", f"{host}:{port}")
    yield name, addr
    manager.remove_proxy(name)


def rule(kind: str, names: tuple[str, ...], rule_id: str = "r", ttl: float = 60.0, **kw: Any):
    kw.setdefault("share", 1.0)
    return DnsRule(id=rule_id, kind=kind, names=names, expires_at=time.time() + ttl, **kw)  # type: ignore[arg-type]


def ask(addr: tuple[str, int], name: str, *, tcp: bool = False) -> tuple[str, list[str]]:
    """(rcode text, A addresses) for ``name`` asked through the responder at ``addr``."""
    query = dns.message.make_query(name, "A")
    send = dns.query.tcp if tcp else dns.query.udp
    reply = send(query, addr[0], port=addr[1], timeout=3)
    addresses = [r.address for rrset in reply.answer for r in rrset]
    return dns.rcode.to_text(reply.rcode()), addresses


def test_everything_is_forwarded_over_udp_and_tcp(responder, upstream):
    _, addr = responder
    assert ask(addr, "api.test") == ("NOERROR", ["10.0.0.1"])
    assert ask(addr, "db.test", tcp=True) == ("NOERROR", ["10.0.0.2"])
    assert ask(addr, "nope.test") == ("NXDOMAIN", [])  # the upstream's own NXDOMAIN


def test_nxdomain_hits_only_the_named_name_and_never_asks_upstream(manager, responder, upstream):
    name, addr = responder
    manager.set_rule(name, rule("nxdomain", ("API.test.",)))
    before = upstream.queries
    assert ask(addr, "api.test") == ("NXDOMAIN", [])
    assert ask(addr, "api.test", tcp=True) == ("NXDOMAIN", [])
    assert upstream.queries == before
    assert ask(addr, "db.test") == ("NOERROR", ["10.0.0.2"])
    assert manager.stats(name)["answered_nxdomain"] == 2


def test_servfail_for_matched_names_only(manager, responder):
    name, addr = responder
    manager.set_rule(name, rule("servfail", ("db.test",)))
    assert ask(addr, "db.test") == ("SERVFAIL", [])
    assert ask(addr, "api.test") == ("NOERROR", ["10.0.0.1"])


def test_wildcard_matches_names_below_the_suffix_but_not_the_suffix(manager, responder):
    name, addr = responder
    manager.set_rule(name, rule("servfail", ("*.svc.test",)))
    assert ask(addr, "a.svc.test")[0] == "SERVFAIL"
    assert ask(addr, "x.y.svc.test")[0] == "SERVFAIL"
    assert ask(addr, "svc.test") == ("NOERROR", ["10.0.0.3"])
    assert ask(addr, "api.test") == ("NOERROR", ["10.0.0.1"])
    assert name_matches("*.svc.test", "A.SVC.TEST.") and not name_matches("*.svc.test", "xsvc.test")


def test_delay_adds_100ms_to_matched_names_only(manager, responder):
    name, addr = responder

    def ms(qname: str) -> float:
        start = time.perf_counter()
        assert ask(addr, qname)[0] == "NOERROR"
        return (time.perf_counter() - start) * 1000

    base = statistics.median(ms("api.test") for _ in range(10))
    manager.set_rule(name, rule("delay", ("api.test",), delay_ms=100))
    added = statistics.median(ms("api.test") for _ in range(7)) - base
    assert abs(added - 100) <= 10, f"added {added:.1f} ms"
    assert statistics.median(ms("db.test") for _ in range(5)) < 50  # not delayed


def test_share_half_fails_about_half_of_200_queries(manager, responder):
    name, addr = responder
    manager.set_rule(name, rule("nxdomain", ("api.test",), share=0.5))
    failed = sum(ask(addr, "api.test")[0] == "NXDOMAIN" for _ in range(200))
    # Binomial(200, 0.5): sd ≈ 7.1, so ±4 sd is [72, 128].
    assert 72 <= failed <= 128, failed


def test_rules_expire_by_themselves(manager, responder):
    name, addr = responder
    manager.set_rule(name, rule("nxdomain", ("api.test",), rule_id="past", ttl=-1))
    short = rule("servfail", ("api.test",), rule_id="short", ttl=2.0)
    manager.set_rule(name, short)
    assert ask(addr, "api.test")[0] == "SERVFAIL"
    wait_until(lambda: ask(addr, "api.test")[0] != "SERVFAIL", 10, "the rule to expire")
    assert time.time() >= short.expires_at  # not before its expiry
    assert ask(addr, "api.test") == ("NOERROR", ["10.0.0.1"])  # nor the expired one
    assert manager.rules(name) == []


def test_an_unreachable_upstream_becomes_servfail(manager):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as spare:
        spare.bind(("127.0.0.1", 0))
        dead = spare.getsockname()[1]
    addr = manager.ensure_proxy("dead", "127.0.0.1:0", f"127.0.0.1:{dead}")
    try:
        assert ask(addr, "api.test")[0] == "SERVFAIL"
    finally:
        manager.remove_proxy("dead")


def test_rule_validation():
    with pytest.raises(ValueError, match="names"):
        rule("nxdomain", ())
    with pytest.raises(ValueError, match="delay_ms"):
        rule("delay", ("a.test",))
    with pytest.raises(ValueError, match="kind"):
        rule("refused", ("a.test",))


# --- injectors -------------------------------------------------------------------------


@pytest.fixture
def runtime() -> Iterator[SimpleNamespace]:
    mgr = DnsManager()
    yield SimpleNamespace(dns=mgr)
    mgr.stop()


def make_ctx(target_config: dict[str, Any], runtime: Any = None, **kw: Any) -> InjectionContext:
    kw.setdefault("fault_id", 4)
    kw.setdefault("intensity", 1.0)
    kw.setdefault("expires_at", time.time() + 60)
    return InjectionContext(target_name="shop", target_config=target_config, runtime=runtime, **kw)


def test_registry_validation_and_dry_run():
    assert isinstance(get_injector("dns.nxdomain"), NxdomainInjector)
    assert isinstance(get_injector("dns.servfail"), ServfailInjector)
    assert isinstance(get_injector("dns.delay"), DnsDelayInjector)
    for cls, params, path in [
        (NxdomainInjector, {"names": []}, "names"),
        (NxdomainInjector, {"names": ["a.*.test"]}, "names"),
        (ServfailInjector, {"names": ["ok.test"], "extra": 1}, "extra"),
        (DnsDelayInjector, {"names": ["ok.test"]}, "delay_ms"),
        (DnsDelayInjector, {"names": ["ok.test"], "delay_ms": 61_000}, "delay_ms"),
    ]:
        with pytest.raises(InvalidParams) as exc:
            cls().validate(params)
        assert [e.path for e in exc.value.errors] == [path], params
    assert NxdomainInjector().validate({"names": ["API.Test.", "*.svc.test"]}) == {
        "names": ["api.test", "*.svc.test"]
    }
    with pytest.raises(InvalidParams, match=r"config\.dns is missing"):
        NxdomainInjector().validate({"names": ["a.test"]}, {"proxies": {}})
    with pytest.raises(InvalidParams, match="lacks upstream"):
        NxdomainInjector().validate({"names": ["a.test"]}, {"dns": {"listen": "127.0.0.1:1"}})
    config = {"dns": {"listen": "127.0.0.1:5353", "upstream": "127.0.0.1:53"}}
    ctx = make_ctx(config, intensity=0.3, expires_at=1_700_000_030)
    assert NxdomainInjector().dry_run({"names": ["api.test", "*.svc.test"]}, ctx) == (
        "answer NXDOMAIN without asking the upstream for 30% of queries for 'api.test', "
        "'*.svc.test' on the DNS responder 127.0.0.1:5353 (forwarding to 127.0.0.1:53) "
        "until 22:13:50 UTC"
    )
    text = DnsDelayInjector().dry_run({"names": ["db.test"], "delay_ms": 300}, ctx)
    assert text.startswith("hold the query 300 ms before forwarding it for 30% of queries")


def _port_free_for_udp_and_tcp() -> int:
    """A port both protocols can bind right now (the responder needs both; a UDP-only
    check lost the race to a TCP listener of another test process once)."""
    for _ in range(100):
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
        ):
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free for both UDP and TCP")


def test_inject_revert_idempotence_and_expiry(upstream, runtime):
    port = _port_free_for_udp_and_tcp()
    host, up_port = upstream.address
    config = {"dns": {"listen": f"127.0.0.1:{port}", "upstream": f"{host}:{up_port}"}}
    addr = ("127.0.0.1", port)
    handle = ServfailInjector().inject({"names": ["api.test"]}, make_ctx(config, runtime))
    assert handle == {"responder": "shop/dns", "rule_id": "fault-4"}
    assert ask(addr, "api.test")[0] == "SERVFAIL"
    ServfailInjector().revert(handle, make_ctx(config, runtime))
    ServfailInjector().revert(handle, make_ctx(config, runtime))
    assert ask(addr, "api.test") == ("NOERROR", ["10.0.0.1"])
    ctx = make_ctx(config, runtime, fault_id=8, expires_at=time.time() + 2.0)
    NxdomainInjector().inject({"names": ["*.test"]}, ctx)
    assert ask(addr, "db.test")[0] == "NXDOMAIN"
    # Expired, never reverted; and not before its expiry.
    wait_until(lambda: ask(addr, "db.test")[0] == "NOERROR", 10, "the fault to expire")
    assert time.time() >= ctx.expires_at
    with pytest.raises(InjectionError, match=r"ctx\.runtime\.dns"):
        NxdomainInjector().inject({"names": ["a.test"]}, make_ctx(config))


def test_agent_style_sync_hosts_http_proxies_and_dns_from_target_configs(upstream):
    """The reconcile the agent runs, on plain objects instead of Target rows."""
    host, up_port = upstream.address
    targets = [
        SimpleNamespace(
            name="shop",
            config={
                "http_proxies": {"api": {"listen": "127.0.0.1:0", "upstream": "http://x:1"}},
                "dns": {"listen": "127.0.0.1:0", "upstream": f"{host}:{up_port}"},
            },
        ),
        SimpleNamespace(name="bare", config={"dns": {"listen": "127.0.0.1:0"}}),
    ]
    http_wanted = wanted_http_proxies(targets)
    dns_wanted = wanted_dns_responders(targets)
    assert http_wanted == {"shop/api": ("127.0.0.1:0", "http://x:1")}
    assert dns_wanted == {
        "shop/dns": ("127.0.0.1:0", f"{host}:{up_port}"),
        "bare/dns": ("127.0.0.1:0", ""),
    }
    http_mgr, dns_mgr = HttpProxyManager(), DnsManager()
    try:
        assert http_mgr.sync(http_wanted) == {}
        errors = dns_mgr.sync(dns_wanted)
        assert list(errors) == ["bare/dns"]  # reported, and the others still came up
        assert http_mgr.proxy_names() == ["shop/api"]
        assert dns_mgr.proxy_names() == ["shop/dns"]
        assert ask(dns_mgr.address("shop/dns"), "api.test")[0] == "NOERROR"
        assert dns_mgr.sync({}) == {} and dns_mgr.proxy_names() == []
    finally:
        http_mgr.stop()
        dns_mgr.stop()
