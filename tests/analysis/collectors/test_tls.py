"""Collector clients share one verifying TLS context instead of loading the CA bundle
once per client (and per run)."""

from __future__ import annotations

import ssl

import httpx

from analysis.collectors.probe import Probe
from analysis.collectors.scrape import Scraper
from analysis.collectors.tls import client_ssl_context


def _context_of(client: httpx.Client) -> ssl.SSLContext:
    return client._transport._pool._ssl_context


def test_every_probe_and_scraper_uses_the_one_context() -> None:
    probes = [Probe("http://127.0.0.1:9/", requests=1) for _ in range(2)]
    scraper = Scraper("http://127.0.0.1:9/metrics")
    try:
        contexts = {id(_context_of(p._client)) for p in probes}
        contexts.add(id(_context_of(scraper._client)))
        assert contexts == {id(client_ssl_context())}
    finally:
        for probe in probes:
            probe.close()
        scraper.close()


def test_the_shared_context_still_verifies_certificates_and_host_names() -> None:
    context = client_ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.cert_store_stats()["x509_ca"] > 0  # a CA bundle is loaded
