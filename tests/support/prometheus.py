"""A real Prometheus server for tests (Debian's ``prometheus``), scraping given targets."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.processes import free_port


def prometheus_binary() -> str:
    binary = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None
    )
    if binary is None:
        reason = "the `prometheus` server binary is not on PATH (apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run these tests: see .ci/install-system.sh")
        pytest.skip(reason)
    return binary


def instant(client: httpx.Client, url: str, promql: str) -> list[dict]:
    try:
        resp = client.get(f"{url}/api/v1/query", params={"query": promql})
    except httpx.HTTPError:  # not listening yet
        return []
    return resp.json()["data"]["result"] if resp.status_code == 200 else []


@contextmanager
def prometheus(job: str, target: str, *, labels: str = "{}", history_s: int = 10) -> Iterator[str]:
    """Run Prometheus scraping ``target`` (host:port) every second as ``job``; yield its
    URL once ``history_s`` seconds of samples exist (so rate() windows are full)."""
    binary = prometheus_binary()
    workdir = Path(tempfile.mkdtemp(prefix="scep-prom-"))
    (workdir / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: {job}\n"
        "    scrape_interval: 1s\n"
        "    scrape_timeout: 1s\n"
        f"    static_configs: [{{targets: ['{target}'], labels: {labels}}}]\n"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + history_s + 20
        with httpx.Client(timeout=1.0, trust_env=False) as client:
            while time.monotonic() < deadline and proc.poll() is None:
                up = instant(client, url, f'up{{job="{job}"}}')
                seen = instant(client, url, f'count_over_time(up{{job="{job}"}}[{history_s + 5}s])')
                if (
                    up
                    and up[0]["value"][1] == "1"
                    and seen
                    and float(seen[0]["value"][1]) >= history_s
                ):
                    break
                time.sleep(0.25)
            else:
                pytest.fail(
                    f"prometheus did not get {target} up with {history_s} s of data "
                    f"(exit {proc.poll()}):\n{log.read_text(errors='replace')[-2000:]}"
                )
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)
