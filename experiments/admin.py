"""Django admin for targets, experiments, runs and the kill switch.

Changes made here go through the same services as the API, with source ``admin``, so
the audit trail and versioning do not depend on which door a change came through. What
the platform writes by itself (versions, runs, events) is shown read-only.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from analysis.models import Finding
from audit.models import AuditSource
from experiments.models import Experiment, ExperimentVersion, KillSwitch, Run, RunEvent, Target
from experiments.services import access, catalog, runs
from experiments.spec import SpecError, load_spec_text, validate_spec
from injectors.models import ActiveFault
from scep.permissions import ADMIN, APPROVER, OPERATOR, VIEWER, has_role

SOURCE = AuditSource.ADMIN


class TeamScopedAdminMixin:
    """Staff see the rows of their own teams; superusers see all (access.scope)."""

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return access.scope(super().get_queryset(request), request.user)


class ReadOnlyAdminMixin:
    """Look, never touch: for rows that are facts recorded by the platform."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- Targets --------------------------------------------------------------------------


@admin.register(Target)
class TargetAdmin(TeamScopedAdminMixin, admin.ModelAdmin):
    list_display = ("name", "environment", "allowed", "agent", "updated_at")
    list_filter = ("environment", "allowed", "agent")
    search_fields = ("name", "description", "agent")
    readonly_fields = ("created_at", "updated_at")
    # Credentials are write-only through the API: a form would echo them back in clear.
    exclude = ("secrets",)

    def save_model(self, request: HttpRequest, obj: Target, form: Any, change: bool) -> None:
        fields = {name: getattr(obj, name) for name in (*catalog.TARGET_FIELDS, "team")}
        if change:
            # ``obj`` already carries the new values; the service needs the stored row
            # to compute what changed for the audit entry.
            stored = Target.objects.get(pk=obj.pk)
            saved = catalog.update_target(stored, actor=request.user, source=SOURCE, **fields)
        else:
            saved = catalog.create_target(actor=request.user, source=SOURCE, **fields)
        # The admin goes on using ``obj`` (messages, redirect), so make it the saved row.
        obj.pk = saved.pk
        obj.created_at, obj.updated_at = saved.created_at, saved.updated_at
        obj._state.adding = False
        obj._state.db = saved._state.db

    def delete_model(self, request: HttpRequest, obj: Target) -> None:
        catalog.delete_target(obj, actor=request.user, source=SOURCE)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for target in queryset:
            catalog.delete_target(target, actor=request.user, source=SOURCE)


# --- Experiments ----------------------------------------------------------------------


class ExperimentForm(forms.ModelForm):
    """Only the spec is edited; name, description and target are taken from it."""

    class Meta:
        model = Experiment
        fields = ("spec",)

    def clean_spec(self) -> dict[str, Any]:
        data = self.cleaned_data["spec"]
        try:
            if isinstance(data, str):
                data = load_spec_text(data)
            if not isinstance(data, dict):
                raise forms.ValidationError("the spec must be a mapping of fields")
            validate_spec(data)
            target = catalog.resolve_target(data)
            validate_spec(
                data,
                target_config=target.connection_config(resolve=False),
                target_labels=target.labels,
            )
        except SpecError as exc:
            raise forms.ValidationError([str(err) for err in exc.errors]) from None
        clash = Experiment.objects.filter(name=data.get("name"))
        if self.instance.pk is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise forms.ValidationError(f"an experiment named {data.get('name')!r} exists")
        return data


class ExperimentVersionInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = ExperimentVersion
    fields = ("version", "created_by", "created_at")
    readonly_fields = fields
    extra = 0
    show_change_link = True


@admin.register(Experiment)
class ExperimentAdmin(TeamScopedAdminMixin, admin.ModelAdmin):
    form = ExperimentForm
    list_display = ("name", "target", "version", "created_by", "updated_at")
    list_filter = ("target", "target__environment")
    search_fields = ("name", "description", "target__name")
    readonly_fields = ("name", "description", "target", "version", "created_by", "created_at")
    inlines = (ExperimentVersionInline,)

    def save_model(self, request: HttpRequest, obj: Experiment, form: Any, change: bool) -> None:
        spec = form.cleaned_data["spec"]
        if change:
            stored = Experiment.objects.get(pk=obj.pk)
            saved = catalog.update_experiment(stored, spec, actor=request.user, source=SOURCE)
        else:
            saved = catalog.create_experiment(spec, actor=request.user, source=SOURCE)
        for name in ("pk", "name", "description", "target_id", "version", "spec", "created_at"):
            setattr(obj, name, getattr(saved, name))
        obj._state.adding = False
        obj._state.db = saved._state.db

    def delete_model(self, request: HttpRequest, obj: Experiment) -> None:
        catalog.delete_experiment(obj, actor=request.user, source=SOURCE)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for experiment in queryset:
            catalog.delete_experiment(experiment, actor=request.user, source=SOURCE)


@admin.register(ExperimentVersion)
class ExperimentVersionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("experiment", "version", "created_by", "created_at")
    list_filter = ("experiment",)
    search_fields = ("experiment__name",)


# --- Runs -----------------------------------------------------------------------------


class RunEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = RunEvent
    fields = ("at", "kind", "phase", "message")
    readonly_fields = fields
    extra = 0


class FindingInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Finding
    fields = ("metric", "kind", "severity", "confidence", "title")
    readonly_fields = fields
    extra = 0


class FaultInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = ActiveFault
    fields = ("injector", "state", "agent", "injected_at", "expires_at", "reverted_at")
    readonly_fields = fields
    extra = 0
    show_change_link = True


@admin.register(Run)
class RunAdmin(TeamScopedAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "experiment",
        "experiment_version",
        "status",
        "verdict",
        "dry_run",
        "started_by",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "verdict", "dry_run", "experiment")
    search_fields = ("experiment__name", "status_reason", "verdict_reason", "worker")
    date_hierarchy = "created_at"
    inlines = (RunEventInline, FindingInline, FaultInline)
    actions = ("abort_selected",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # runs are started, not typed in

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Run | None = None) -> bool:
        # Deleting an active run would cascade away its ledger rows while faults may be
        # in place; only finished runs may be pruned.
        if obj is not None and not obj.is_terminal:
            return False
        return super().has_delete_permission(request, obj)

    def has_scep_operator_permission(self, request: HttpRequest) -> bool:
        return access.highest_role(request.user) in (OPERATOR, APPROVER, ADMIN)

    @admin.action(description="Abort selected runs", permissions=["scep_operator"])
    def abort_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        aborted = 0
        for run in queryset.select_related("experiment"):
            if access.team_role(request.user, run.experiment.team_id) in (None, VIEWER):
                continue  # the operator role is needed in the run's own team
            try:
                runs.abort_run(run, actor=request.user, source=SOURCE, reason="aborted in admin")
                aborted += 1
            except runs.RunNotAbortable:
                continue
        self.message_user(request, f"Abort requested for {aborted} run(s).", messages.SUCCESS)


@admin.register(RunEvent)
class RunEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("at", "run", "kind", "phase", "message")
    list_filter = ("kind", "phase")
    search_fields = ("message", "run__experiment__name")
    date_hierarchy = "at"


# --- Kill switch ----------------------------------------------------------------------


@admin.register(KillSwitch)
class KillSwitchAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Shown read-only; engaging and releasing are actions so they run the services."""

    list_display = ("__str__", "engaged", "engaged_at", "engaged_by", "reason")
    list_filter = ("engaged",)
    search_fields = ("reason", "engaged_by")
    actions = ("engage", "release")

    # The same roles as the API: operators may pull the switch, only admins let go.
    def has_scep_operator_permission(self, request: HttpRequest) -> bool:
        return has_role(request.user, OPERATOR)

    def has_scep_admin_permission(self, request: HttpRequest) -> bool:
        return has_role(request.user, ADMIN)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        KillSwitch.get()  # make the single row exist, so there is something to act on
        return super().get_queryset(request)

    @admin.action(
        description="Engage the kill switch (abort runs, revert faults)",
        permissions=["scep_operator"],
    )
    def engage(self, request: HttpRequest, queryset: QuerySet) -> None:
        counts = runs.engage_kill_switch(actor=request.user, source=SOURCE, reason="from admin")
        self.message_user(
            request,
            f"Kill switch engaged: {counts['aborted_runs']} run(s) aborted, "
            f"{counts['reverted_faults']} fault(s) reverted.",
            messages.WARNING,
        )

    @admin.action(description="Release the kill switch", permissions=["scep_admin"])
    def release(self, request: HttpRequest, queryset: QuerySet) -> None:
        runs.release_kill_switch(actor=request.user, source=SOURCE)
        self.message_user(request, "Kill switch released.", messages.SUCCESS)
