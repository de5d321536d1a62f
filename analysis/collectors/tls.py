"""One TLS context for every collector HTTP client of the process.

httpx builds a fresh context (and loads the whole CA bundle into OpenSSL) for each
client unless it is handed one: about 70 ms of CPU per client on a 2-core host, paid by
every probe and scrape target of every run before its first sample, and native memory
that lingered until a full garbage collection (see ``scep.memory``). A context is safe to
share between clients and threads; verification is unchanged (httpx's own defaults).
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def client_ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context(trust_env=False)
