"""The Grafana dashboard's queries are valid PromQL — checked by a real Prometheus — and
it overlays the chaos annotation on the target's own metrics."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.support.processes import ROOT
from tests.support.prometheus import prometheus

pytestmark = pytest.mark.slow

DASHBOARD = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
GRAFANA_VARIABLES = {
    r"\$__rate_interval": "5s",
    r"\$__interval": "5s",
    r"\$\{?[a-z_]+\}?": ".*",
}


def expressions() -> list[str]:
    exprs = [t["expr"] for p in DASHBOARD["panels"] for t in p.get("targets", []) if "expr" in t]
    exprs += [a["target"]["expr"] for a in DASHBOARD["annotations"]["list"] if "target" in a]
    return exprs


def as_promql(expr: str) -> str:
    for pattern, value in GRAFANA_VARIABLES.items():
        expr = re.sub(pattern, value, expr)
    return expr


def test_the_dashboard_overlays_chaos_windows_on_the_targets_metrics():
    exprs = expressions()
    assert any("scep_fault_active" in e for e in exprs)
    assert any("demo_request_duration_seconds" in e for e in exprs)
    assert any("scep_fault_active" in a.get("target", {}).get("expr", "")
               for a in DASHBOARD["annotations"]["list"])  # fmt: skip


def test_every_dashboard_query_is_accepted_by_prometheus():
    from demo.services import start_demo_services

    demo = start_demo_services(loadgen=False)
    try:
        with prometheus("scep", demo.target_url.split("://", 1)[1], history_s=1) as url:
            for expr in expressions():
                answer = httpx.get(f"{url}/api/v1/query", params={"query": as_promql(expr)})
                assert answer.json()["status"] == "success", (expr, answer.text[:300])
    finally:
        demo.stop()
