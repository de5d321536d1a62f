"""A real HTTP receiver for notification tests, and settings that deliver inline fast.

The receiver is a threaded ``http.server`` on a free local port: deliveries go through
httpx and the network stack exactly as in production, only the far end is ours.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Receiver:
    """Records every POST; answers with ``statuses`` in turn (the last one repeats)."""

    base_url: str = ""
    statuses: list[int] = field(default_factory=lambda: [200])
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return self.base_url + path

    def next_status(self) -> int:
        with self.lock:
            index = min(len(self.requests), len(self.statuses)) - 1
            return self.statuses[max(index, 0)]

    def bodies(self, path: str | None = None) -> list[dict[str, Any]]:
        return [r["json"] for r in self.requests if path is None or r["path"] == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            with state.lock:
                state.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "json": json.loads(raw)}
                )
            status = state.next_status()
            # Echo the path on errors, as some real services do: the secret in it must
            # be redacted before the error is stored.
            body = b"ok" if status < 400 else f"boom at {self.path}".encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fast_delivery(settings: Any) -> Any:
    """Send in-process (no broker) with a tiny backoff and timeout."""
    settings.SCEP_NOTIFY_INLINE = True
    settings.SCEP_NOTIFY_BACKOFF_S = 0.02
    settings.SCEP_NOTIFY_TIMEOUT_S = 2.0
    settings.SCEP_NOTIFY_MAX_ATTEMPTS = 3
    return settings
