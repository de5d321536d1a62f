"""Django admin for the active-fault ledger and the agents.

Both are facts the platform records (what was injected, who is alive), so they are
read-only here: reverting a fault is done by the kill switch or the reaper, which
know how to undo it, never by editing a row.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from injectors.models import ActiveFault, Agent, FaultState


class ReadOnlyAdminMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ExpiryFilter(admin.SimpleListFilter):
    """Open faults past their expiry are the ones the reaper should have taken care of."""

    title = "expiry"
    parameter_name = "expiry"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("overdue", "Open and past expiry"),
            ("soon", "Open, expiring within a minute"),
            ("open", "Open (pending or active)"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        now = timezone.now()
        open_faults = queryset.filter(state__in=FaultState.open())
        if self.value() == "overdue":
            return open_faults.filter(expires_at__lt=now)
        if self.value() == "soon":
            return open_faults.filter(
                expires_at__gte=now, expires_at__lt=now + timedelta(minutes=1)
            )
        if self.value() == "open":
            return open_faults
        return queryset


@admin.register(ActiveFault)
class ActiveFaultAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "injector",
        "target",
        "run",
        "state",
        "agent",
        "injected_at",
        "expires_at",
        "reverted_at",
        "revert_reason",
    )
    list_filter = ("state", ExpiryFilter, "injector", "agent", "target")
    search_fields = ("injector", "target__name", "agent", "owner_worker", "error")
    date_hierarchy = "created_at"


class OnlineFilter(admin.SimpleListFilter):
    title = "online"
    parameter_name = "online"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Online"), ("no", "Offline")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        since = timezone.now() - timedelta(seconds=settings.SCEP_AGENT_OFFLINE_AFTER_S)
        if self.value() == "yes":
            return queryset.filter(last_heartbeat__gte=since)
        if self.value() == "no":
            return queryset.exclude(last_heartbeat__gte=since)
        return queryset


@admin.register(Agent)
class AgentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("name", "hostname", "pid", "started_at", "last_heartbeat", "is_online")
    list_filter = (OnlineFilter, "hostname")
    search_fields = ("name", "hostname")

    @admin.display(boolean=True, description="online")
    def is_online(self, agent: Agent) -> bool:
        if agent.last_heartbeat is None:
            return False
        age = (timezone.now() - agent.last_heartbeat).total_seconds()
        return age <= settings.SCEP_AGENT_OFFLINE_AFTER_S
