"""A small DNS forwarder (UDP and TCP) that can fail or slow down chosen names.

The application is pointed at this responder as its resolver; everything is forwarded to
the real upstream resolver, except queries for names under an active rule, which are
answered NXDOMAIN or SERVFAIL locally or held before forwarding. As with the proxies,
nothing on the host changes (no resolv.conf edits, no iptables), and rules expire by
themselves at ``expires_at``.

Design notes (why it is built this way):

* Each query draws ``u`` uniformly once; a rule hits it iff a name matches and
  ``u < rule.share``. DNS clients retry, so a per-query share is what "fails 30% of
  lookups" means to the application.
* Every query is its own task, so a delayed answer never holds up the others.
* The upstream is asked over UDP and, if the answer comes back truncated, again over TCP,
  so big answers survive whichever transport the client used towards us.
* Upstream failures (timeout, refused) become SERVFAIL: what a real recursive resolver
  says, and it keeps the client from waiting for its own timeout on top of ours.
"""

from __future__ import annotations

import asyncio
import errno
import random
import struct
import time
from dataclasses import dataclass
from typing import Any, Literal

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode

from injectors.listener import RuleListener, listen_error, total_delay
from injectors.network.proxy import ProxyError, ProxyManager, parse_address, proxy_key

__all__ = [
    "DnsManager",
    "DnsResponder",
    "DnsRule",
    "dns_key",
    "name_matches",
    "normalise_name",
    "parse_dns_address",
    "wanted_dns_responders",
]

DnsKind = Literal["nxdomain", "servfail", "delay"]
DNS_KINDS: tuple[str, ...] = ("nxdomain", "servfail", "delay")
#: How long one upstream attempt may take before the client is told SERVFAIL.
UPSTREAM_TIMEOUT = 2.0
#: Attempts at binding UDP and TCP on the same ephemeral port before giving up.
BIND_ATTEMPTS = 10


def normalise_name(name: str) -> str:
    """Lower-case, no trailing dot: DNS names compare case-insensitively."""
    return name.strip().rstrip(".").lower()


def name_matches(pattern: str, qname: str) -> bool:
    """Exact name, or ``*.suffix`` for any name *below* suffix (not the suffix itself)."""
    pattern, qname = normalise_name(pattern), normalise_name(qname)
    if pattern.startswith("*."):
        return qname.endswith(pattern[1:])
    return qname == pattern


def parse_dns_address(address: str) -> tuple[str, int]:
    """``host:port`` or a bare ``host`` (port 53), so ``upstream: 10.0.0.2`` just works."""
    if ":" not in address:
        if not address:
            raise ProxyError("bad address ''; expected host or host:port")
        return address, 53
    return parse_address(address)


@dataclass(frozen=True)
class DnsRule:
    """One fault on one responder. Frozen, so it can be shared across threads safely."""

    id: str
    kind: DnsKind
    share: float
    expires_at: float
    names: tuple[str, ...]
    delay_ms: float = 0.0
    jitter_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in DNS_KINDS:
            raise ValueError(f"unknown rule kind {self.kind!r}; expected one of {DNS_KINDS}")
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"share must be within 0..1, got {self.share}")
        if not self.names or not all(normalise_name(n) for n in self.names):
            raise ValueError("names must be a non-empty list of non-empty names")
        if self.delay_ms < 0 or self.jitter_ms < 0:
            raise ValueError("delay_ms and jitter_ms must be >= 0")
        if self.kind == "delay" and self.delay_ms <= 0:
            raise ValueError("a delay rule needs delay_ms > 0")

    def matches(self, qname: str, now: float) -> bool:
        return now < self.expires_at and any(name_matches(p, qname) for p in self.names)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, responder: DnsResponder) -> None:
        self.responder = responder
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.responder.spawn(self._reply(data, addr))

    async def _reply(self, data: bytes, addr: Any) -> None:
        self.responder.stats["queries_udp"] += 1
        answer = await self.responder.answer(data)
        if answer is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(answer, addr)


class DnsResponder(RuleListener[DnsRule]):
    """One listening responder (UDP + TCP on the same port) with its rules.

    Same surface as :class:`~injectors.network.proxy.FaultProxy`, so the generic
    :class:`ProxyManager` can host it.
    """

    STATS = (
        "queries_total",
        "queries_udp",
        "queries_tcp",
        "answered_nxdomain",
        "answered_servfail",
        "queries_delayed",
        "forwarded",
        "upstream_errors",
        "malformed",
    )

    def __init__(
        self,
        name: str,
        listen: tuple[str, int],
        upstream: tuple[str, int],
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(name, listen, upstream, rng)
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        host, port = self.listen
        for _ in range(BIND_ATTEMPTS if port == 0 else 1):
            try:
                self._udp, _ = await loop.create_datagram_endpoint(
                    lambda: _Udp(self), local_addr=(host, port)
                )
                bound = self._udp.get_extra_info("sockname")[:2]
                self._tcp = await asyncio.start_server(
                    self._serve_tcp, bound[0], bound[1], reuse_address=True
                )
            except OSError as exc:
                if self._udp is not None:
                    self._udp.close()
                    self._udp = None
                if exc.errno == errno.EADDRINUSE and port == 0:
                    continue  # the ephemeral UDP port is taken for TCP: try another one
                raise listen_error("DNS responder", self.name, self.listen, exc) from None
            self.bound = bound
            return bound
        raise ProxyError(f"DNS responder {self.name!r} found no port free for both UDP and TCP")

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self._tcp is not None:
            await self._tcp.wait_closed()

    def spawn(self, coro: Any) -> None:
        # Keep a reference: the loop only holds weak ones, and close() must cancel them.
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """RFC 7766 framing: a two-byte length before each message, several per connection."""
        self._tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            while True:
                (size,) = struct.unpack("!H", await reader.readexactly(2))
                data = await reader.readexactly(size)
                self.stats["queries_tcp"] += 1
                answer = await self.answer(data)
                if answer is None:
                    break
                writer.write(struct.pack("!H", len(answer)) + answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, OSError):
            pass
        finally:
            self._tasks.discard(asyncio.current_task())  # type: ignore[arg-type]
            writer.close()

    # --- answering ---------------------------------------------------------------------

    async def answer(self, wire: bytes) -> bytes | None:
        """The reply to one query in wire format, or None when it cannot be parsed."""
        self.stats["queries_total"] += 1
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            self.stats["malformed"] += 1
            return None  # without a parsed id there is nothing we could answer to
        qname = query.question[0].name.to_text() if query.question else ""
        error, delay = self.decide(qname)
        if delay:
            self.stats["queries_delayed"] += 1
            await asyncio.sleep(delay)
        if error is not None:
            self.stats[f"answered_{error.kind}"] += 1
            rcode = dns.rcode.NXDOMAIN if error.kind == "nxdomain" else dns.rcode.SERVFAIL
            return self._local(query, rcode)
        return await self._forward(query)

    def _local(self, query: dns.message.Message, rcode: dns.rcode.Rcode) -> bytes:
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.RA  # we present ourselves as a recursive resolver
        reply.set_rcode(rcode)
        return reply.to_wire()

    async def _forward(self, query: dns.message.Message) -> bytes:
        host, port = self.upstream
        try:
            reply = await dns.asyncquery.udp(
                query, host, timeout=UPSTREAM_TIMEOUT, port=port, ignore_unexpected=True
            )
            if reply.flags & dns.flags.TC:
                reply = await dns.asyncquery.tcp(query, host, timeout=UPSTREAM_TIMEOUT, port=port)
        except (dns.exception.DNSException, OSError, EOFError):
            self.stats["upstream_errors"] += 1
            return self._local(query, dns.rcode.SERVFAIL)
        self.stats["forwarded"] += 1
        return reply.to_wire()

    # --- rules -------------------------------------------------------------------------

    def decide(self, qname: str) -> tuple[DnsRule | None, float]:
        """The error rule that answers this query (if any) and the total delay in seconds.

        Delays add up and come first; among error rules the lowest id wins, so the
        outcome never depends on the order the rules were added in.
        """
        if not self._rules or not qname:
            return None, 0.0
        u = self.rng.random()
        now = time.time()
        hits = [r for r in self.rules() if u < r.share and r.matches(qname, now)]
        delay = total_delay(hits, self.rng)
        errors = sorted((r for r in hits if r.kind != "delay"), key=lambda r: r.id)
        return (errors[0] if errors else None), delay


class DnsManager(ProxyManager):
    """Hosts named DnsResponders on its own event loop thread (thread-safe API)."""

    server_class = DnsResponder
    noun, nouns = "DNS responder", "DNS responders"
    thread_name = "scep-dns-loop"

    @staticmethod
    def parse_upstream(upstream: str) -> tuple[str, int]:
        return parse_dns_address(upstream)


def dns_key(target_name: str) -> str:
    """One responder per target, keyed like the proxies so names never collide."""
    return proxy_key(target_name, "dns")


def wanted_dns_responders(targets: Any) -> dict[str, tuple[str, str]]:
    """key → (listen, upstream) for every target (``.name``, ``.config``) with config.dns."""
    wanted: dict[str, tuple[str, str]] = {}
    for target in targets:
        spec = (target.config or {}).get("dns")
        if isinstance(spec, dict):
            # A missing field becomes "" so that hosting it fails, and is logged, visibly.
            wanted[dns_key(target.name)] = (spec.get("listen", ""), spec.get("upstream", ""))
    return wanted
