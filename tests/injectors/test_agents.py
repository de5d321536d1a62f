"""Agents on their own Celery queues: two at once, each applying only its targets'
faults; an agent SIGKILLed mid-fault leaves nothing behind once it is back, and a paused
process is resumed at expiry even while its agent is dead."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import psutil
import pytest
from django.utils import timezone

from experiments.choices import RunStatus
from experiments.models import Run
from experiments.services.catalog import create_experiment, create_target
from experiments.services.runs import abort_run, start_run
from injectors.models import ActiveFault, Agent, FaultState
from tests.support.processes import free_port, round_trip_ms, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def demo_pair(name: str, agent: str, start_agent):
    """A demo API whose dependency is reached through a proxy of the given agent."""
    from demo.services import start_demo_services

    listen = f"127.0.0.1:{free_port()}"

    def via(url: str) -> str:
        create_target(
            actor="test", source="system", name=name, agent=agent,
            config={"proxies": {"downstream": {
                "listen": listen, "upstream": url.split("://", 1)[1].rstrip("/")}}},
        )  # fmt: skip
        start_agent(agent)
        return f"http://{listen}"

    return start_demo_services(downstream_via=via, loadgen=False)


def latency_spec(name: str, target: str, api: str, duration: float = 60) -> dict:
    probe = {"url": f"{api}/api/items", "requests": 2}
    return {
        "name": name, "target": target,
        "fault": {"type": "network.latency", "params": {"proxy": "downstream", "latency_ms": 200}},
        "duration": duration, "baseline": 1, "recovery": 1, "interval": 0.5,
        "metrics": [{"name": "latency", "better": "lower", "probe": probe,
                     "measure": "latency_p50"}],
    }  # fmt: skip


def fault_of(run: Run) -> ActiveFault:
    return wait_until(
        lambda: ActiveFault.objects.filter(run=run, state=FaultState.ACTIVE).first(),
        30,
        f"fault of run {run.pk} active",
    )


def test_two_agents_each_apply_only_their_own_targets_faults(start_agent, start_worker):
    alpha = demo_pair("alpha", "agent-alpha", start_agent)
    beta = demo_pair("beta", "agent-beta", start_agent)
    try:
        start_worker()
        run_a = start_run(create_experiment(
            latency_spec("lat-alpha", "alpha", alpha.target_url), actor="t", source="system"),
            actor="t", source="system")  # fmt: skip
        fault_a = fault_of(run_a)
        assert fault_a.agent == "agent-alpha"
        assert round_trip_ms(f"{alpha.target_url}/api/items") > 190
        assert round_trip_ms(f"{beta.target_url}/api/items") < 150

        run_b = start_run(create_experiment(
            latency_spec("lat-beta", "beta", beta.target_url), actor="t", source="system"),
            actor="t", source="system")  # fmt: skip
        assert fault_of(run_b).agent == "agent-beta"
        assert round_trip_ms(f"{beta.target_url}/api/items") > 190
        assert set(Agent.objects.values_list("name", flat=True)) >= {"agent-alpha", "agent-beta"}
        for run in (run_a, run_b):
            abort_run(run, actor="t", source="system")
        for run in (run_a, run_b):
            wait_until(
                lambda r=run: Run.objects.get(pk=r.pk).status in RunStatus.terminal(),
                30,
                "runs ended",
            )
        assert round_trip_ms(f"{alpha.target_url}/api/items") < 150
    finally:
        alpha.stop()
        beta.stop()


def test_an_agent_sigkilled_mid_fault_reverts_it_when_it_comes_back(start_agent, start_worker):
    services = demo_pair("crashy", "agent-crashy", start_agent)
    try:
        start_worker()
        run = start_run(create_experiment(
            latency_spec("lat-crashy", "crashy", services.target_url), actor="t",
            source="system"), actor="t", source="system")  # fmt: skip
        fault = fault_of(run)
        agent = Agent.objects.get(name="agent-crashy")
        psutil.Process(agent.pid).kill()  # SIGKILL: the proxy dies with the agent

        start_agent("agent-crashy")  # back: proxies re-created, leftovers reverted
        fault = wait_until(
            lambda: ActiveFault.objects.filter(pk=fault.pk, state=FaultState.REVERTED).first(),
            30,
            "leftover fault reverted by the restarted agent",
        )
        # The restarted agent reverts it ("agent restarted"), or the run notices first and
        # records that its fault ended early because the agent restarted: both say why.
        assert "agent restarted" in fault.revert_reason
        assert round_trip_ms(f"{services.target_url}/api/items") < 150
    finally:
        services.stop()


def test_a_paused_process_is_resumed_at_expiry_even_with_its_agent_dead(start_agent):
    from injectors.services import inject_fault, open_fault

    sleeper = subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(0.05)"])
    try:
        target = create_target(
            actor="t",
            source="system",
            name="sleepy",
            agent="agent-pause",
            config={"processes": {"sleeper": {"pid": sleeper.pid}}},
        )
        agent = start_agent("agent-pause")
        fault = open_fault(
            run=None,
            target=target,
            injector="process.pause",
            params={"process": "sleeper"},
            intensity=1.0,
            expires_at=timezone.now() + timedelta(seconds=12),
            owner_worker="test",
        )
        inject_fault(fault)
        wait_until(
            lambda: psutil.Process(sleeper.pid).status() == psutil.STATUS_STOPPED,
            5,
            "process stopped",
        )
        agent.kill()  # SIGKILL the agent: its watchdog must still resume the process

        wait_until(
            lambda: psutil.Process(sleeper.pid).status() != psutil.STATUS_STOPPED,
            (fault.expires_at - timezone.now()).total_seconds() + 3,
            "process resumed by the watchdog at expiry",
        )
    finally:
        sleeper.kill()
        sleeper.wait()
