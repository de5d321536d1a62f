"""The agent hosts config.http_proxies and config.dns of its targets, and only those."""

from __future__ import annotations

import pytest

from experiments.models import Target
from injectors.agent import AgentRuntime


@pytest.mark.django_db
def test_sync_proxies_starts_and_stops_http_proxies_and_dns_responders():
    Target.objects.create(
        name="shop",
        agent="edge",
        config={
            "http_proxies": {"api": {"listen": "127.0.0.1:0", "upstream": "http://127.0.0.1:9"}},
            "dns": {"listen": "127.0.0.1:0", "upstream": "127.0.0.1:9"},
        },
    )
    Target.objects.create(
        name="other",
        agent="elsewhere",
        config={"dns": {"listen": "127.0.0.1:0", "upstream": "127.0.0.1:9"}},
    )
    runtime = AgentRuntime("edge")  # not start()ed: no heartbeat, no housekeeping thread
    try:
        runtime.sync_proxies()
        assert runtime.http_proxies.proxy_names() == ["shop/api"]
        assert runtime.dns.proxy_names() == ["shop/dns"]
        assert runtime.proxies.proxy_names() == []
        Target.objects.filter(name="shop").update(config={})
        runtime.sync_proxies()
        assert runtime.http_proxies.proxy_names() == []
        assert runtime.dns.proxy_names() == []
    finally:
        runtime.stop()
        assert not runtime.http_proxies.running and not runtime.dns.running
