"""The agent: a Celery worker on queue ``agent.<name>`` that hosts host-local faults.

It keeps the fault proxies of its targets listening, applies and reverts ledger rows
when the orchestrator asks, heartbeats so preflight knows it is there, and closes its
own expired ledger rows. On start it reverts any row a previous incarnation left open,
so a crashed agent never leaves a fault behind once it is back.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from injectors import execution
from injectors.models import ActiveFault, Agent, FaultState
from injectors.network.proxy import proxy_key

__all__ = ["AgentRuntime", "apply_fault", "current_runtime", "revert_fault", "run_agent"]

log = logging.getLogger(__name__)

_runtime: AgentRuntime | None = None


def current_runtime() -> AgentRuntime:
    if _runtime is None:
        raise RuntimeError("no agent runtime in this process: start one with `scep agent`")
    return _runtime


class AgentRuntime:
    """Process-wide state of one agent: its proxies and per-fault locks."""

    def __init__(self, name: str):
        from injectors.dns.server import DnsManager
        from injectors.http.proxy import HttpProxyManager
        from injectors.network.proxy import ProxyManager

        self.name = name
        self.proxies = ProxyManager()
        # HTTP (L7) proxies and DNS responders get managers, i.e. loop threads, of their
        # own, so a busy or slow fault in one family never stalls another's traffic.
        self.http_proxies = HttpProxyManager()
        self.dns = DnsManager()
        self.started_at = timezone.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._housekeeping, name="agent-house", daemon=True)

    def start(self) -> None:
        global _runtime
        _runtime = self
        self.started_at = timezone.now()
        self.proxies.start()
        # Leftovers are swept before the first heartbeat says this agent is up, and only
        # rows opened before it started: a fault opened the moment the agent is seen alive
        # is new work for it, not something a previous run of it left behind.
        self.sync_proxies()
        self.recover_leftovers()
        self.heartbeat(started=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.proxies.stop()
        self.http_proxies.stop()
        self.dns.stop()

    # -- housekeeping -----------------------------------------------------------------
    def heartbeat(self, *, started: bool = False) -> None:
        defaults: dict[str, Any] = {
            "hostname": settings.SCEP_HOSTNAME,
            "pid": os.getpid(),
            "last_heartbeat": timezone.now(),
            "info": {"proxies": sorted(self.proxies.proxy_names())},
        }
        if started:
            defaults["started_at"] = self.started_at
        Agent.objects.update_or_create(name=self.name, defaults=defaults)

    def sync_proxies(self) -> None:
        """Listen on every proxy that this agent's targets declare."""
        from experiments.models import Target
        from injectors.dns.server import wanted_dns_responders
        from injectors.http.proxy import wanted_http_proxies

        targets = list(Target.objects.filter(agent=self.name))
        wanted: dict[str, tuple[str, str]] = {}
        for target in targets:
            for proxy_name, proxy in (target.config or {}).get("proxies", {}).items():
                wanted[proxy_key(target.name, proxy_name)] = (proxy["listen"], proxy["upstream"])
        for key, (listen, upstream) in wanted.items():
            try:
                self.proxies.ensure_proxy(key, listen, upstream)
            except Exception as exc:  # a port taken must not stop the agent
                log.error("agent %s: proxy %s on %s not started: %s", self.name, key, listen, exc)
        for key in set(self.proxies.proxy_names()) - set(wanted):
            self.proxies.remove_proxy(key)
        # config.http_proxies and config.dns: the same reconcile, each on its own manager.
        for manager, family_wanted in (
            (self.http_proxies, wanted_http_proxies(targets)),
            (self.dns, wanted_dns_responders(targets)),
        ):
            for key, error in manager.sync(family_wanted).items():
                log.error("agent %s: %s %s not started: %s", self.name, manager.noun, key, error)

    def recover_leftovers(self) -> None:
        """Revert ledger rows a previous run of this agent left open."""
        leftovers = ActiveFault.objects.filter(
            agent=self.name, state__in=FaultState.open(), created_at__lt=self.started_at
        )
        for fault in leftovers:
            execution.revert_fault(fault.pk, "agent restarted", self)

    def expire_due(self) -> None:
        due = ActiveFault.objects.filter(
            agent=self.name, state__in=FaultState.open(), expires_at__lte=timezone.now()
        )
        for fault in due:
            execution.revert_fault(fault.pk, "expired", self)

    def _housekeeping(self) -> None:
        while not self._stop.wait(settings.SCEP_AGENT_HEARTBEAT_S):
            try:
                close_old_connections()
                self.heartbeat()
                self.sync_proxies()
                self.expire_due()
            except Exception:
                log.exception("agent %s housekeeping failed", self.name)


def apply_fault(fault_id: int) -> None:
    runtime = current_runtime()
    execution.apply_fault(fault_id, runtime, where=f"agent {runtime.name}")


def revert_fault(fault_id: int, reason: str = "") -> None:
    execution.revert_fault(fault_id, reason, current_runtime())


def run_agent(name: str, *, concurrency: int = 4, loglevel: str = "WARNING") -> None:
    """Start the runtime and consume ``agent.<name>`` until stopped."""
    from scep.celery import app

    runtime = AgentRuntime(name)
    runtime.start()
    try:
        worker = app.Worker(
            hostname=f"agent-{name}@{settings.SCEP_HOSTNAME}",
            queues=[f"agent.{name}"],
            pool="threads",
            concurrency=concurrency,
            loglevel=loglevel,
            without_mingle=True,
            without_gossip=True,
            without_heartbeat=True,
            beat=False,
        )
        worker.start()
    finally:
        runtime.stop()
