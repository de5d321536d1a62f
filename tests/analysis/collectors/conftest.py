"""Real HTTP servers on loopback for the collector tests (no HTTP mocking).

One threaded server per test with a few routes whose behaviour the test controls:
``/sleep?ms=N``, ``/status?code=N``, ``/hang`` (until the test ends), and ``/metrics``
serving whatever text the test put in ``server.metrics_text``. The server records the
client port of every request, which shows whether connections are reused.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _TestServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        srv = self.server
        with srv.lock:
            srv.hits[parts.path] += 1
            srv.client_ports.add(self.client_address[1])
        if parts.path == "/sleep":
            time.sleep(int(query.get("ms", "0")) / 1000)
            self._reply(200, b"ok")
        elif parts.path == "/status":
            self._reply(int(query["code"]), b"status")
        elif parts.path == "/hang":
            srv.release.wait(30)
            self._reply(200, b"late")
        elif parts.path == "/metrics":
            self._reply(200, srv.metrics_text.encode(), "text/plain; version=0.0.4")
        else:
            self._reply(404, b"nope")


class _TestServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.hits: Counter[str] = Counter()
        self.client_ports: set[int] = set()
        self.release = threading.Event()
        self.metrics_text = ""

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture
def server() -> Iterator[_TestServer]:
    srv = _TestServer()
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()
        thread.join(5)


@pytest.fixture
def dead_url() -> str:
    """A loopback URL where nothing listens: connections are refused immediately."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/metrics"


@pytest.fixture
def blackhole_url() -> Iterator[str]:
    """A port that completes TCP handshakes (kernel backlog) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/metrics"
