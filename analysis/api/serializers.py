"""Serializers of the analysis API: findings, suggestions, scores."""

from __future__ import annotations

from rest_framework import serializers

from analysis.models import Finding, Suggestion


class RunFindingSerializer(serializers.ModelSerializer):
    """A finding with the run it belongs to (the run detail embeds findings without it)."""

    class Meta:
        model = Finding
        ref_name = "RunFinding"
        fields = [
            "id", "run", "metric", "kind", "severity", "confidence", "title", "summary",
            "evidence", "created_at",
        ]  # fmt: skip


class SuggestionSerializer(serializers.ModelSerializer):
    experiment = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Suggestion
        fields = [
            "id", "run", "kind", "title", "rationale", "spec", "rank", "status",
            "experiment", "created_at",
        ]  # fmt: skip


class AcceptSuggestionSerializer(serializers.Serializer):
    start = serializers.BooleanField(
        default=False, help_text="also start a run of the new experiment right away"
    )
