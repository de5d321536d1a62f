"""Django admin for campaigns (schedules editable here) and game days.

Saving a campaign rewrites its django-celery-beat entry (``services.sync_schedule``) and
writes an audit entry with source ``admin``, as the API does; executions are facts the
platform records and are shown read-only.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from audit.models import AuditSource
from audit.services import record
from campaigns import services
from campaigns.choices import ScheduleKind
from campaigns.models import (
    Campaign,
    CampaignItem,
    CampaignRun,
    CampaignRunItem,
    GameDay,
    GameDayNote,
)

SOURCE = AuditSource.ADMIN


class CampaignForm(forms.ModelForm):
    class Meta:
        model = Campaign
        fields = [
            "name",
            "description",
            "mode",
            "concurrency",
            "schedule_kind",
            "interval_seconds",
            "crontab",
            "paused",
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        kind = data.get("schedule_kind")
        if kind == ScheduleKind.INTERVAL and not data.get("interval_seconds"):
            self.add_error("interval_seconds", "required for an interval schedule")
        if kind == ScheduleKind.CRONTAB:
            try:
                services.parse_crontab(data.get("crontab") or "")
            except ValueError as exc:
                self.add_error("crontab", str(exc))
        return data


class CampaignItemInline(admin.TabularInline):
    model = CampaignItem
    extra = 1
    autocomplete_fields = ["experiment"]


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    form = CampaignForm
    inlines = [CampaignItemInline]
    list_display = ["name", "mode", "schedule_kind", "interval_seconds", "crontab", "paused"]
    list_filter = ["mode", "schedule_kind", "paused"]
    search_fields = ["name"]
    actions = ["pause", "resume"]

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

    @admin.action(description="Pause (stop the schedule and further items)")
    def pause(self, request: HttpRequest, queryset: QuerySet) -> None:
        for campaign in queryset:
            services.pause_campaign(campaign, actor=request.user, source=SOURCE)
        messages.info(request, f"{queryset.count()} campaign(s) paused")

    @admin.action(description="Resume")
    def resume(self, request: HttpRequest, queryset: QuerySet) -> None:
        for campaign in queryset:
            services.resume_campaign(campaign, actor=request.user, source=SOURCE)
        messages.info(request, f"{queryset.count()} campaign(s) resumed")


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
class CampaignRunAdmin(admin.ModelAdmin):
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


@admin.register(GameDay)
class GameDayAdmin(admin.ModelAdmin):
    list_display = ["name", "campaign", "status", "started_at", "finished_at"]
    list_filter = ["status"]
    readonly_fields = ["status", "execution", "started_at", "finished_at", "created_by"]
    filter_horizontal = ["observers"]
    inlines = [GameDayNoteInline]
