"""Fetching active failure flags from the platform: cached, hard-bounded, fail-safe.

Applications call this on their hot path, so three rules shape it:

* **no background thread** polls; the first call after the cache goes stale fetches, and
  every other thread meanwhile keeps using what is cached instead of queueing behind it;
* the fetch has a **hard deadline** (``timeout_s``) covering DNS, connect and a server that
  trickles bytes: it runs in a short-lived helper thread the caller waits on with a timeout;
* anything but a clean answer (unreachable, slow, 4xx/5xx, bad JSON) means **no faults**
  until the next fetch, and a warning logged at most once per ``warn_interval_s``.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import quote, urlsplit

__all__ = ["ENDPOINT", "Flag", "FlagsClient"]

log = logging.getLogger("scep_flags")

ENDPOINT = "/api/v1/failure-flags/active/"
#: Refuse absurd bodies: a flag feed is a few KiB; anything huge is not our API.
MAX_BODY_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class Flag:
    """One active ``code.flag`` fault as the SDK needs it."""

    fault: int
    flag: str
    labels: dict[str, str]
    effect: str
    intensity: float
    expires_mono: float
    latency_ms: float | None = None
    exception_type: str = "FailureFlagError"
    exception_message: str = "injected by SCEP failure flag"
    response: Any = None
    target: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def matches(self, name: str, labels: dict[str, str]) -> bool:
        """Same flag name, and every label of the flag matches the call's (``*`` globs)."""
        if name != self.flag:
            return False
        for key, pattern in self.labels.items():
            value = labels.get(key)
            if value is None or not fnmatchcase(value, pattern):
                return False
        return True

    @classmethod
    def parse(cls, item: dict[str, Any], fetched_mono: float) -> Flag:
        """Build from one feed entry; raises (KeyError, TypeError, ValueError) if malformed."""
        params = item.get("params") or {}
        exc = params.get("exception") or {}
        effect = str(item["effect"])
        if effect not in ("exception", "latency", "response"):
            raise ValueError(f"unknown effect {effect!r}")
        intensity = float(item.get("intensity", 1.0))
        labels = item.get("labels") or {}
        if not isinstance(labels, dict):
            raise TypeError("labels must be a mapping")
        latency = params.get("latency_ms")
        return cls(
            fault=int(item.get("fault") or 0),
            flag=str(item["flag"]),
            labels={str(k): str(v) for k, v in labels.items()},
            effect=effect,
            intensity=min(max(intensity, 0.0), 1.0),
            expires_mono=fetched_mono + float(item["expires_in_s"]),
            latency_ms=float(latency) if latency is not None else None,
            exception_type=str(exc.get("type") or "FailureFlagError"),
            exception_message=str(exc.get("message") or "injected by SCEP failure flag"),
            response=params.get("response"),
            target=str(item.get("target") or ""),
            raw=item,
        )


class FlagsClient:
    """Holds the configuration and the cache of one application's view of the flags."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        cache_ttl_s: float = 2.0,
        timeout_s: float = 0.5,
        app_labels: dict[str, str] | None = None,
        target: str | None = None,
        warn_interval_s: float = 60.0,
    ):
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.cache_ttl_s = float(cache_ttl_s)
        self.timeout_s = float(timeout_s)
        self.app_labels = {str(k): str(v) for k, v in (app_labels or {}).items()}
        self.target = target
        self.warn_interval_s = float(warn_interval_s)
        self._parts = parts
        self._path = (parts.path or "") + ENDPOINT
        if target:
            self._path += "?target=" + quote(target, safe="")
        self._lock = threading.Lock()
        self._flags: list[Flag] = []
        self._fresh_until = 0.0  # monotonic; 0 = never fetched
        self._fetching = False
        self._last_warning = float("-inf")
        #: Number of fetches attempted (tests and metrics read it).
        self.fetches = 0

    # -- the cache ---------------------------------------------------------------------
    def is_fresh(self) -> bool:
        return time.monotonic() < self._fresh_until

    def cached(self) -> list[Flag]:
        now = time.monotonic()
        return [f for f in self._flags if f.expires_mono > now]

    def flags(self) -> list[Flag]:
        """The active flags, fetching first when the cache is stale. Never raises."""
        with self._lock:
            if time.monotonic() < self._fresh_until or self._fetching:
                # Fresh, or someone else is fetching right now: do not wait for them.
                return self.cached()
            self._fetching = True
        flags: list[Flag] = []
        try:
            flags = self._fetch()
        except Exception as exc:  # fail safe: any trouble means no faults
            self._warn(f"{type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._flags = flags
                self._fresh_until = time.monotonic() + self.cache_ttl_s
                self._fetching = False
        return self.cached()

    def invalidate(self) -> None:
        """Make the next call fetch (e.g. right after a test changed the ledger)."""
        with self._lock:
            self._fresh_until = 0.0

    # -- fetching ----------------------------------------------------------------------
    def _fetch(self) -> list[Flag]:
        self.fetches += 1
        result: dict[str, Any] = {}
        done = threading.Event()

        def work() -> None:
            try:
                result["value"] = self._request()
            except BaseException as exc:
                result["error"] = exc
            finally:
                done.set()

        started = time.monotonic()
        helper = threading.Thread(target=work, name="scep-flags-fetch", daemon=True)
        helper.start()
        if not done.wait(self.timeout_s):
            # The helper ends by itself: its socket has the same timeout.
            raise TimeoutError(f"no answer from {self.base_url} within {self.timeout_s:g} s")
        if "error" in result:
            raise result["error"]
        status, body = result["value"]
        if status != 200:
            raise RuntimeError(f"{self.base_url}{ENDPOINT} answered HTTP {status}")
        data = json.loads(body)
        if not isinstance(data, dict) or not isinstance(data.get("flags"), list):
            raise ValueError("the answer has no 'flags' list")
        flags = []
        for item in data["flags"]:
            try:
                flags.append(Flag.parse(item, started))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                self._warn(f"skipping a malformed flag entry ({exc})")
        return flags

    def _request(self) -> tuple[int, bytes]:
        # http.client rather than urllib: no proxy environment variables, no redirects,
        # nothing that could stretch the call beyond the deadline.
        parts = self._parts
        conn_cls = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        conn = conn_cls(parts.hostname, parts.port, timeout=self.timeout_s)
        headers = {"Accept": "application/json", "User-Agent": "scep-flags/1"}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        try:
            conn.request("GET", self._path, headers=headers)
            response = conn.getresponse()
            body = response.read(MAX_BODY_BYTES + 1)
            if len(body) > MAX_BODY_BYTES:
                raise ValueError("answer too large")
            return response.status, body
        finally:
            conn.close()

    def _warn(self, reason: str) -> None:
        now = time.monotonic()
        if now - self._last_warning < self.warn_interval_s:
            return
        self._last_warning = now
        log.warning(
            "scep_flags: cannot read failure flags from %s (%s); injecting no faults "
            "until it answers (next such warning in %g s at the earliest)",
            self.base_url,
            reason,
            self.warn_interval_s,
        )
