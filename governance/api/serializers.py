"""Policy input and output; the field checks live in governance.services."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from governance.models import POLICY_FIELDS, Policy, Team
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
        fields = ("id", *POLICY_FIELDS, "created_at", "updated_at")
        read_only_fields = ("created_at", "updated_at")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        current = {}
        if self.instance is not None:
            current = {f: getattr(self.instance, f) for f in self.Meta.fields if f != "id"}
        errors = policy_field_errors({**current, **attrs})
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class TeamSerializer(serializers.ModelSerializer):
    """A team the caller belongs to, with the caller's role there."""

    your_role = serializers.SerializerMethodField(help_text="Your role in this team.")
    members = serializers.SerializerMethodField(help_text="username: role, for each member.")

    class Meta:
        model = Team
        fields = ("id", "name", "description", "your_role", "members")
        read_only_fields = fields

    def get_your_role(self, team: Team) -> str | None:
        from experiments.services.access import team_role

        return team_role(self.context["request"].user, team.pk)

    def get_members(self, team: Team) -> dict[str, str]:
        return {m.user.get_username(): m.role for m in team.memberships.all()}
