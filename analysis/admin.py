"""Django admin for collected series and findings: evidence, so read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from analysis.models import Finding, MetricSeries, Suggestion


class ReadOnlyAdminMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(MetricSeries)
class MetricSeriesAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("run", "metric", "phase", "seq", "points")
    list_filter = ("phase", "metric")
    search_fields = ("metric", "run__experiment__name")

    @admin.display(description="points")
    def points(self, series: MetricSeries) -> int:
        return len(series.values or [])


@admin.register(Finding)
class FindingAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("title", "run", "metric", "kind", "severity", "confidence", "created_at")
    list_filter = ("severity", "kind")
    search_fields = ("title", "summary", "metric", "run__experiment__name")


@admin.register(Suggestion)
class SuggestionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Suggestions are accepted through the API or UI (which creates the experiment)."""

    list_display = ("run", "rank", "kind", "title", "status", "experiment", "created_at")
    list_filter = ("kind", "status")
    search_fields = ("title", "rationale")
