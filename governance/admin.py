"""Policies in the admin: edited through the same service (validated, audited)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from audit.models import AuditSource
from audit.services import record
from governance import services
from governance.models import POLICY_FIELDS, Policy, Team, TeamMembership


class PolicyForm(forms.ModelForm):
    class Meta:
        model = Policy
        fields = POLICY_FIELDS

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        for path, reasons in services.policy_field_errors(data).items():
            field = path.split("[", 1)[0]
            self.add_error(field if field in self.fields else None, f"{path}: {reasons[0]}")
        return data


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    form = PolicyForm
    list_display = ("name", "environment", "enabled", "requires_approval", "updated_at")
    list_filter = ("environment", "enabled", "requires_approval")

    def save_model(self, request: HttpRequest, obj: Policy, form: Any, change: bool) -> None:
        stored = Policy.objects.get(pk=obj.pk) if change else None
        data = {name: form.cleaned_data[name] for name in POLICY_FIELDS}
        saved = services.save_policy(stored, data, actor=request.user, source=AuditSource.ADMIN)
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: Policy) -> None:
        services.delete_policy(obj, actor=request.user, source=AuditSource.ADMIN)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for policy in queryset:
            services.delete_policy(policy, actor=request.user, source=AuditSource.ADMIN)


class TeamMembershipInline(admin.TabularInline):
    model = TeamMembership
    extra = 1
    autocomplete_fields = ("user",)


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    """Teams and who is in them with which role; changes are audited."""

    list_display = ("name", "created_at")
    search_fields = ("name",)
    inlines = [TeamMembershipInline]

    def save_model(self, request: HttpRequest, obj: Team, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        changed = {k: {"after": form.cleaned_data[k]} for k in form.changed_data}
        action = "team.update" if change else "team.create"
        record(
            actor=request.user, action=action, source=AuditSource.ADMIN, obj=obj, changes=changed
        )

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        before = _members(form.instance)
        super().save_formset(request, form, formset, change)
        after = _members(form.instance)
        if before != after:
            record(
                actor=request.user,
                action="team.members",
                source=AuditSource.ADMIN,
                obj=form.instance,
                changes={"members": {"before": before, "after": after}},
            )

    def delete_model(self, request: HttpRequest, obj: Team) -> None:
        record(actor=request.user, action="team.delete", source=AuditSource.ADMIN, obj=obj)
        super().delete_model(request, obj)


def _members(team: Team) -> list[str]:
    """``["alice:operator", ...]``: a team's memberships as the audit trail shows them."""
    if team.pk is None:
        return []
    rows = team.memberships.select_related("user")
    return sorted(f"{m.user.get_username()}:{m.role}" for m in rows)
