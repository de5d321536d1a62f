"""Policy input and output; the field checks live in governance.services."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from governance.models import Policy
from governance.services import policy_field_errors


class PolicySerializer(serializers.ModelSerializer):
    allowed_families = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="empty: every family"
    )
    time_windows = serializers.JSONField(
        required=False, help_text=Policy.time_windows.field.help_text
    )
    blackouts = serializers.JSONField(required=False, help_text=Policy.blackouts.field.help_text)

    class Meta:
        model = Policy
        fields = (
            "id",
            "name",
            "environment",
            "enabled",
            "allowed_families",
            "max_intensity",
            "max_duration_s",
            "time_windows",
            "timezone",
            "blackouts",
            "requires_approval",
            "created_at",
            "updated_at",
        )
        read_only_fields = ("created_at", "updated_at")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        current = {}
        if self.instance is not None:
            current = {f: getattr(self.instance, f) for f in self.Meta.fields if f != "id"}
        errors = policy_field_errors({**current, **attrs})
        if errors:
            raise serializers.ValidationError(errors)
        return attrs
