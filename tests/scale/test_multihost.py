"""Several hosts on one machine: two agents, each in its own network namespace (joined
to the root namespace by a veth pair) with its own host name, each hosting the fault
proxy of its own target. Runs target each host; a fault on one host leaves the other
alone, and each fault is applied by its own host's agent."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings

from experiments.choices import RunStatus
from experiments.services.catalog import create_target
from injectors.models import ActiveFault, Agent
from tests.scale.conftest import assert_no_open_fault, services_pass, start, wait_terminal
from tests.support.processes import (
    ROOT,
    database_url,
    free_port,
    platform_env,
    round_trip_ms,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _ip(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *argv], capture_output=True, text=True, check=check, timeout=30)


class Host:
    """A network namespace with a veth pair: 10.N.I.1 on the root side, 10.N.I.2 inside."""

    def __init__(self, index: int, tag: str, net: int, folder: Path):
        self.name = f"host-{chr(ord('a') + index)}"
        self.ns = f"scep{tag}{index}"
        self.outer, self.inner = f"vs{tag}{index}o", f"vs{tag}{index}i"
        self.root_ip, self.ip = f"10.{net}.{index}.1", f"10.{net}.{index}.2"
        self.folder = folder
        self.procs: list[subprocess.Popen] = []

    def create(self) -> None:
        _ip("netns", "add", self.ns)
        _ip("link", "add", self.outer, "type", "veth", "peer", "name", self.inner)
        _ip("link", "set", self.inner, "netns", self.ns)
        _ip("addr", "add", f"{self.root_ip}/24", "dev", self.outer)
        _ip("link", "set", self.outer, "up")
        for argv in (("addr", "add", f"{self.ip}/24", "dev", self.inner),
                     ("link", "set", self.inner, "up"), ("link", "set", "lo", "up")):  # fmt: skip
            _ip("netns", "exec", self.ns, "ip", *argv)

    def run(self, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, *argv], cwd=ROOT, env=env,
            stdout=log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def destroy(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        _ip("netns", "del", self.ns, check=False)  # takes the veth pair with it
        _ip("link", "del", self.outer, check=False)


def _service_ports() -> list[int]:
    """Loopback TCP services the platform needs (PostgreSQL, Redis) to bridge in."""
    ports = []
    db = database_url()
    if db.startswith("postgres"):
        ports.append(urlsplit(db).port or 5432)
    broker = settings.CELERY_BROKER_URL
    if broker.startswith(("redis", "amqp")):
        ports.append(urlsplit(broker).port or (6379 if broker.startswith("redis") else 5672))
    return ports


@pytest.fixture
def hosts(tmp_path: Path, broker_dir: Path):
    """Two network namespaces with the platform's services bridged in; torn down after."""
    if os.geteuid() != 0 or _ip("netns", "add", probe := f"sceptry{os.getpid()}",
                                check=False).returncode:  # fmt: skip
        if os.environ.get("CI"):
            pytest.fail("ip netns add is not permitted, and CI requires the multi-host test")
        pytest.skip("ip netns add is not permitted here (needs root)")
    _ip("netns", "del", probe, check=False)
    tag = str(os.getpid() % 10000)
    net = 200 + os.getpid() % 50
    made = [Host(i, tag, net, tmp_path) for i in range(2)]
    bridges: list[subprocess.Popen] = []
    try:
        for host in made:
            host.create()
        for port in _service_ports():
            sock = str(tmp_path / f"bridge-{port}.sock")
            bridges.append(subprocess.Popen(
                [sys.executable, "-m", "tests.scale.forward", "unix2tcp", sock, str(port)],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            ))  # fmt: skip
            assert bridges[-1].stdout.readline().strip() == b"ready"
            for host in made:
                inner = host.run(
                    [sys.executable, "-m", "tests.scale.forward", "tcp2unix", str(port), sock],
                    dict(os.environ),
                    tmp_path / f"{host.ns}-bridge-{port}.log",
                )
                wait_until(
                    lambda inner=inner, host=host, port=port: inner.poll() is None and _ip(
                        "netns", "exec", host.ns, "ss", "-ltn", f"sport = :{port}"
                    ).stdout.count("LISTEN"),
                    15, f"bridge of port {port} in {host.ns}",
                )  # fmt: skip
        yield made
    finally:
        for host in made:
            host.destroy()
        for bridge in bridges:
            bridge.terminate()
            bridge.wait(timeout=10)


def _upstream(host: Host, tmp_path: Path) -> tuple[subprocess.Popen, int]:
    """A static HTTP server on the root side of the host's veth: what its proxy fronts."""
    www = tmp_path / f"www-{host.name}"
    www.mkdir()
    (www / "index.html").write_text(host.name)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", host.root_ip],
        cwd=www, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return proc, port


def test_agents_on_two_hosts_each_fault_their_own_target(hosts, tmp_path, broker_dir, start_worker):
    servers = []
    try:
        targets, urls = {}, {}
        for host in hosts:
            server, up_port = _upstream(host, tmp_path)
            servers.append(server)
            listen = f"{host.ip}:{free_port()}"
            targets[host.name] = create_target(
                actor="test", source="system", name=f"web-{host.name}", agent=host.name,
                config={"proxies": {"edge": {"listen": listen,
                                             "upstream": f"{host.root_ip}:{up_port}"}}},
            )  # fmt: skip
            urls[host.name] = f"http://{listen}/index.html"
            began = time.time()
            env = platform_env(broker_dir, SCEP_HOSTNAME=host.name)
            agent = host.run([sys.executable, "-m", "scep", "agent", "--name", host.name],
                             env, tmp_path / f"agent-{host.name}.log")  # fmt: skip

            def ready(agent=agent, host=host, began=began) -> bool:
                assert agent.poll() is None, (tmp_path / f"agent-{host.name}.log").read_text()
                row = Agent.objects.filter(name=host.name, pid=agent.pid).first()
                return bool(row and row.last_heartbeat.timestamp() >= began - 1)

            wait_until(ready, 60, f"agent {host.name} in its namespace", poll=0.2)
            wait_until(lambda u=urls[host.name]: _answers(u), 30, f"proxy of {host.name}")
        start_worker()

        a, b = (h.name for h in hosts)
        assert {x.hostname for x in Agent.objects.filter(name__in=[a, b])} == {a, b}

        def spec(host: str) -> dict:
            return {
                "name": f"latency-{host}", "target": targets[host].name,
                "fault": {"type": "network.latency",
                          "params": {"proxy": "edge", "latency_ms": 250}},
                "duration": 6, "baseline": 2, "recovery": 1, "interval": 0.5,
                "metrics": [{"name": "latency", "better": "lower", "unit": "ms",
                             "measure": "latency_p50",
                             "probe": {"url": urls[host], "requests": 1, "timeout": 3}}],
            }  # fmt: skip

        run_a = start(spec(a))
        wait_until(lambda: ActiveFault.objects.filter(run=run_a, state="active").exists(),
                   60, "fault on host a active")  # fmt: skip
        assert round_trip_ms(urls[a]) > 200
        assert round_trip_ms(urls[b]) < 100  # the other host is untouched
        run_b = start(spec(b))
        runs = wait_terminal([run_a, run_b], timeout=120)
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=10)

    for run, host in zip(runs, (a, b), strict=True):
        assert run.status == RunStatus.COMPLETED, run.status_reason
        fault = ActiveFault.objects.get(run=run)
        assert fault.agent == host and fault.state == "reverted"
    assert_no_open_fault()
    if services_pass():
        assert len(_service_ports()) == 2  # PostgreSQL and Redis were bridged in


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
