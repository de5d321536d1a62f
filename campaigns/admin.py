"""Django admin for campaigns (schedules editable here) and game days.

Saving a campaign rewrites its django-celery-beat entry (``services.sync_schedule``) and
writes an audit entry with source ``admin``, as the API does; executions are facts the
platform records and are shown read-only.

Teams: staff see the campaigns, executions and game days of their teams only; changing a
campaign (the form, pause, resume) needs the operator role in its team, and a campaign's
experiments must belong to its team, as in the API.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest

from audit.models import AuditSource
from audit.services import record
from campaigns import services
from campaigns.choices import ScheduleKind
from campaigns.models import (
    CAMPAIGN_FIELDS,
    Campaign,
    CampaignItem,
    CampaignRun,
    CampaignRunItem,
    GameDay,
    GameDayNote,
)
from campaigns.services import foreign_experiments, non_members
from experiments.admin import TeamScopedAdminMixin
from experiments.services import access
from governance.models import Team, default_team_id
from scep.permissions import ADMIN, APPROVER, OPERATOR

SOURCE = AuditSource.ADMIN


class CampaignForm(forms.ModelForm):
    class Meta:
        model = Campaign
        fields = list(CAMPAIGN_FIELDS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "team" in self.fields:
            self.fields["team"].required = False
            self.fields["team"].help_text = "empty: the default team"

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not data.get("team"):
            data["team"] = Team.objects.get(pk=default_team_id())
            self.instance.team = data["team"]
        kind = data.get("schedule_kind")
        if kind == ScheduleKind.INTERVAL and not data.get("interval_seconds"):
            self.add_error("interval_seconds", "required for an interval schedule")
        if kind == ScheduleKind.CRONTAB:
            try:
                services.parse_crontab(data.get("crontab") or "")
            except ValueError as exc:
                self.add_error("crontab", str(exc))
        return data


class CampaignItemFormSet(forms.BaseInlineFormSet):
    """A campaign runs only its own team's experiments."""

    def clean(self) -> None:
        super().clean()
        team_id = self.instance.team_id
        chosen = [
            form.cleaned_data["experiment"]
            for form in self.forms
            if form.cleaned_data.get("experiment") and not form.cleaned_data.get("DELETE")
        ]
        foreign = foreign_experiments(team_id, chosen) if team_id else []
        if foreign:
            raise forms.ValidationError(
                f"experiments of another team than the campaign's: {', '.join(foreign)}"
            )


def _operates(request: HttpRequest, team_id: int | None) -> bool:
    return access.team_role(request.user, team_id) in (OPERATOR, APPROVER, ADMIN)


class CampaignItemInline(admin.TabularInline):
    model = CampaignItem
    formset = CampaignItemFormSet
    extra = 1
    autocomplete_fields = ["experiment"]


@admin.register(Campaign)
class CampaignAdmin(TeamScopedAdminMixin, admin.ModelAdmin):
    form = CampaignForm
    inlines = [CampaignItemInline]
    list_display = [
        "name",
        "team",
        "mode",
        "schedule_kind",
        "interval_seconds",
        "crontab",
        "paused",
    ]
    list_filter = ["mode", "schedule_kind", "paused"]
    search_fields = ["name"]
    actions = ["pause", "resume"]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "team":
            teams = access.teams_with_role(request.user, OPERATOR)
            kwargs["queryset"] = (
                Team.objects.all() if teams is None else Team.objects.filter(pk__in=teams)
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and not _operates(request, obj.team_id):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and not _operates(request, obj.team_id):
            return False
        return super().has_delete_permission(request, obj)

    def has_scep_operator_permission(self, request: HttpRequest) -> bool:
        return access.highest_role(request.user) in (OPERATOR, APPROVER, ADMIN)

    def save_model(self, request: HttpRequest, obj: Campaign, form: Any, change: bool) -> None:
        if not _operates(request, obj.team_id):  # e.g. the default team, left empty
            raise PermissionDenied("saving a campaign needs the operator role in its team")
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        campaign = form.instance
        services.sync_schedule(campaign)
        record(
            actor=request.user,
            action="campaign.update" if change else "campaign.create",
            source=SOURCE,
            obj=campaign,
            changes={"fields": form.changed_data},
        )

    def delete_model(self, request: HttpRequest, obj: Campaign) -> None:
        services.delete_campaign(obj, actor=request.user, source=SOURCE)

    @admin.action(
        description="Pause (stop the schedule and further items)", permissions=["scep_operator"]
    )
    def pause(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = 0
        for campaign in queryset:
            if _operates(request, campaign.team_id):  # the role counts in its own team
                services.pause_campaign(campaign, actor=request.user, source=SOURCE)
                done += 1
        messages.info(request, f"{done} campaign(s) paused")

    @admin.action(description="Resume", permissions=["scep_operator"])
    def resume(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = 0
        for campaign in queryset:
            if _operates(request, campaign.team_id):
                services.resume_campaign(campaign, actor=request.user, source=SOURCE)
                done += 1
        messages.info(request, f"{done} campaign(s) resumed")


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class CampaignRunItemInline(ReadOnlyInline):
    model = CampaignRunItem
    fields = ["position", "experiment", "run", "started_at", "error"]
    readonly_fields = fields


@admin.register(CampaignRun)
class CampaignRunAdmin(TeamScopedAdminMixin, admin.ModelAdmin):
    list_display = ["id", "campaign", "trigger", "status", "reason", "created_at", "finished_at"]
    list_filter = ["status", "trigger"]
    inlines = [CampaignRunItemInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class GameDayNoteInline(ReadOnlyInline):
    model = GameDayNote
    fields = ["at", "author", "text"]
    readonly_fields = fields


class GameDayForm(forms.ModelForm):
    class Meta:
        model = GameDay
        fields = ["campaign", "name", "observers"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        campaign = data.get("campaign")
        outsiders = non_members(campaign.team_id, data.get("observers") or []) if campaign else []
        if outsiders:
            names = ", ".join(outsiders)
            self.add_error("observers", f"not members of team {campaign.team.name!r}: {names}")
        return data


@admin.register(GameDay)
class GameDayAdmin(TeamScopedAdminMixin, admin.ModelAdmin):
    form = GameDayForm
    list_display = ["name", "campaign", "status", "started_at", "finished_at"]
    list_filter = ["status"]
    readonly_fields = ["status", "execution", "started_at", "finished_at", "created_by"]
    filter_horizontal = ["observers"]
    inlines = [GameDayNoteInline]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "campaign":
            kwargs["queryset"] = access.scope(Campaign.objects.all(), request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)
