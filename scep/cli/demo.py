"""``scep demo``: everything on loopback, on the embedded default, in about a minute.

Starts the demo dependency and service, a host agent hosting the fault proxy between
them, an orchestrator worker with the reaper, and a load generator; registers the
target; runs the demo experiment with live progress; prints the verdict and the top
findings; writes the reports; stops everything it started.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command

from demo.experiment import AGENT_NAME, TARGET_NAME, demo_spec, demo_target_config
from scep.cli.main import EXIT_ERROR, CliError, actor
from scep.cli.progress import follow_run

__all__ = ["run_demo"]

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PlatformProcesses:
    """The platform's own processes (agent, worker) started for the demo."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.log_dir = settings.VAR_DIR / "demo"
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - child owns it
        proc = subprocess.Popen(
            [sys.executable, "-m", "scep", *args],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def wait_for_agent(proc: subprocess.Popen, proxy_key: str, timeout: float = 30) -> None:
    from injectors.models import Agent

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CliError(f"the demo agent exited (see {settings.VAR_DIR / 'demo/agent.log'})")
        agent = Agent.objects.filter(name=AGENT_NAME, pid=proc.pid).first()
        if agent and proxy_key in agent.info.get("proxies", []):
            return
        time.sleep(0.1)
    raise CliError(f"the demo agent did not start its proxy within {timeout:g} s")


def register_demo_target(proxy_listen: str, downstream: str):
    from experiments.models import Target
    from experiments.services.catalog import create_target, update_target

    config = demo_target_config(proxy_listen, downstream)
    fields = {
        "description": "The SCEP demo API and its downstream dependency",
        "environment": "development",
        "allowed": True,
        "agent": AGENT_NAME,
        "config": config,
    }
    target = Target.objects.filter(name=TARGET_NAME).first()
    if target is None:
        return create_target(actor=actor(), source="cli", name=TARGET_NAME, **fields)
    return update_target(target, actor=actor(), source="cli", **fields)


def _upsert_experiment(spec: dict):
    from experiments.models import Experiment
    from experiments.services.catalog import create_experiment, update_experiment

    existing = Experiment.objects.filter(name=spec["name"]).first()
    if existing is None:
        return create_experiment(spec, actor=actor(), source="cli")
    return update_experiment(existing, spec, actor=actor(), source="cli")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_demo(*, json_output: bool = False, windows: list[float] | None = None) -> int:
    from demo.services import start_demo_services
    from experiments.services.runs import release_kill_switch, start_run

    started = time.monotonic()
    call_command("migrate", interactive=False, verbosity=0)
    platform = PlatformProcesses()
    services = None
    try:
        proxy_port = _free_port()
        proxy_listen = f"127.0.0.1:{proxy_port}"

        def via_proxy(downstream_url: str) -> str:
            downstream = downstream_url.split("://", 1)[1].rstrip("/")
            register_demo_target(proxy_listen, downstream)
            agent = platform.start("agent", "agent", "--name", AGENT_NAME)
            wait_for_agent(agent, f"{TARGET_NAME}/downstream")
            _say(f"agent '{AGENT_NAME}' up: fault proxy {proxy_listen} → {downstream}")
            return f"http://{proxy_listen}"

        _say("starting the demo services (downstream, API, load generator) …")
        services = start_demo_services(downstream_via=via_proxy, loadgen_rps=20)
        _say(f"demo API at {services.target_url}, load 20 req/s")
        platform.start("worker", "worker", "--beat")

        from experiments.models import KillSwitch

        if KillSwitch.get().engaged:
            release_kill_switch(actor=actor(), source="cli")
        spec = demo_spec(services.target_url)
        if windows:
            spec.update(baseline=windows[0], duration=windows[1], recovery=windows[2])
        experiment = _upsert_experiment(spec)
        run = start_run(experiment, actor=actor(), source="cli")
        _say(f"run {run.pk}: {experiment.spec['description']}")
        run = follow_run(run.pk, timeout=240)
    finally:
        if services is not None:
            services.stop()
        platform.stop()
    return _print_outcome(run, json_output, time.monotonic() - started)


def _print_outcome(run, json_output: bool, elapsed: float) -> int:
    from analysis.models import Finding
    from analysis.services import build_report

    folder = Path(settings.SCEP_REPORTS_DIR) / str(run.pk)
    if json_output:
        print(json.dumps(build_report(run), indent=2, default=str))
    out = sys.stderr if json_output else sys.stdout
    confidence = f" (confidence {run.verdict_confidence:.0%})" if run.verdict_confidence else ""
    print(f"\nrun {run.pk}: {run.status} — verdict {run.verdict or 'none'}{confidence}", file=out)
    if run.verdict_reason:
        print(f"  {run.verdict_reason}", file=out)
    if run.score is not None:
        print(
            f"  resilience score {run.score:.0f}/100 "
            f"(95 % interval {run.score_low:.0f}–{run.score_high:.0f})",
            file=out,
        )
    findings = Finding.objects.filter(run=run).exclude(kind__in=("no_impact", "recovered"))
    if findings:
        print("top findings:", file=out)
        for finding in findings.order_by("-confidence")[:5]:
            print(f"  [{finding.severity}] {finding.title}", file=out)
    advice = (run.summary or {}).get("analysis", {}).get("recommendations", [])
    if advice:
        print("what to fix:", file=out)
        for item in advice[:3]:
            print(f"  - {item.get('title', '')}: {item.get('advice', '')}", file=out)
    suggestions = list(run.suggestions.all()[:3])
    if suggestions:
        print("try next (accept with POST /api/v1/suggestions/<id>/accept/):", file=out)
        for sg in suggestions:
            print(f"  #{sg.pk} {sg.title}", file=out)
    if (folder / "report.html").exists():
        print(f"report: {folder / 'report.json'}\n        {folder / 'report.html'}", file=out)
    print(f"demo finished in {elapsed:.1f} s", file=out)
    if run.status == "failed":
        return EXIT_ERROR
    return 0
