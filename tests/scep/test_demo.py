"""``scep demo`` end to end (with short windows): real services, agent, worker, report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import ROOT, platform_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_the_demo_injects_latency_judges_it_and_writes_the_reports(broker_dir):
    result = subprocess.run(
        [sys.executable, "-m", "scep", "demo", "--json", "--windows", "8,6,4"],
        env=platform_env(broker_dir),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["run"]["status"] == "completed"
    assert report["run"]["fault"]["type"] == "network.latency"
    # 300 ms on a ~10 ms API breaks the 250 ms p95 objective.
    assert report["run"]["verdict"] == "failed"
    kinds = {(f["metric"], f["kind"]) for f in report["analysis"]["findings"]}
    assert ("api_latency_p95", "degradation") in kinds
    during = [
        v
        for v, p in zip(
            report["series"]["api_latency_p95"]["values"],
            report["series"]["api_latency_p95"]["phases"],
            strict=True,
        )
        if p == "during"
    ]
    # Every sample is above the objective except, at most, one tick that straddled the
    # injection instant on a busy machine.
    assert len(during) >= 4 and sum(v > 250 for v in during) >= len(during) - 1, during
    paths = [
        line.split()[-1]
        for line in result.stderr.splitlines()
        if "report" in line and line.strip().endswith((".json", ".html"))
    ]
    assert {Path(p).name for p in paths} == {"report.json", "report.html"}
    assert all(Path(p).exists() for p in paths)
