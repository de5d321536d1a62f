"""Small shared pieces of the demo HTTP services (stdlib only, no framework).

Every demo service speaks HTTP/1.1 with explicit ``Content-Length`` so clients can keep
connections alive (the fault proxy and the probes both depend on realistic connection
reuse), logs nothing per request (a load generator at 50 rps would drown the terminal),
announces ``READY <url>`` on stdout once it listens (so a supervisor can use port 0 and
learn the real port without racing for it), and exits cleanly on SIGTERM.
"""

from __future__ import annotations

import ipaddress
import json
import signal
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "QuietHandler",
    "announce",
    "ensure_loopback_url",
    "make_server",
    "serve_until_signal",
]


class QuietHandler(BaseHTTPRequestHandler):
    """Base handler: keep-alive friendly, silent, with JSON/text helpers."""

    protocol_version = "HTTP/1.1"
    server_version = "scep-demo/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request access log."""

    def send_body(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, payload: Any) -> None:
        self.send_body(status, json.dumps(payload).encode(), "application/json")

    def not_found(self) -> None:
        self.send_json(404, {"error": "not found", "path": self.path})

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:  # overridden by services
        self.not_found()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def make_server(host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> _Server:
    """Bind (port 0 picks a free port); refuses non-loopback hosts for safety."""
    if not _is_loopback_host(host):
        raise SystemExit(f"refusing to bind {host!r}: demo services listen on loopback only")
    return _Server((host, port), handler)


def announce(url: str) -> None:
    """Tell a supervising process where we listen (see ``demo.services``)."""
    print(f"READY {url}", flush=True)


def server_url(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"


def serve_until_signal(server: ThreadingHTTPServer) -> None:
    """Serve until SIGTERM/SIGINT, then close the listening socket."""

    def _stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever(poll_interval=0.2)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()
        sys.stdout.flush()


def _is_loopback_host(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def ensure_loopback_url(url: str) -> str:
    """The URL itself if it is http(s) to a loopback address; otherwise exit with a reason.

    The demo tools generate traffic, so they must never be pointed at someone else's host.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SystemExit(f"not an http(s) URL: {url!r}")
    if not _is_loopback_host(parts.hostname):
        raise SystemExit(f"refusing {url!r}: demo tools only talk to loopback addresses")
    return url
