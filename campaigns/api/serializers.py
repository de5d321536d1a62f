"""Serializers of the campaigns API: validation of input, shapes of output."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from rest_framework import serializers

from campaigns.choices import ScheduleKind
from campaigns.models import (
    CAMPAIGN_FIELDS,
    Campaign,
    CampaignRun,
    CampaignRunItem,
    GameDay,
    GameDayNote,
)
from campaigns.services import (
    campaign_experiments,
    foreign_experiments,
    non_members,
    parse_crontab,
)
from experiments.models import Experiment
from experiments.services import access
from governance.models import Team


def _caller(context: dict[str, Any]) -> Any:
    """The user a serializer validates for: ``context["user"]`` (web pages) or the
    request's user (API); None when validating for the system."""
    if context.get("user") is not None:
        return context["user"]
    request = context.get("request")
    return getattr(request, "user", None)


class CampaignSerializer(serializers.ModelSerializer):
    """A campaign; ``experiments`` is the ordered list of experiment names."""

    experiments = serializers.ListField(
        child=serializers.CharField(),
        allow_empty=False,
        help_text="Experiment names (or ids), in the order they run.",
    )
    team = serializers.SlugRelatedField(
        slug_field="name",
        queryset=Team.objects.all(),
        required=False,
        help_text="The owning team (default: the first experiment's team).",
    )
    periodic_task = serializers.SlugRelatedField(slug_field="name", read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Campaign
        fields = [
            "id",
            *CAMPAIGN_FIELDS,
            "experiments",
            "periodic_task",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["paused", "periodic_task", "created_by", "created_at", "updated_at"]

    def validate_experiments(self, value: list[str]) -> list[Experiment]:
        found: list[Experiment] = []
        missing = []
        # Experiments of teams the caller is not in do not exist for them (as in the API).
        visible = Experiment.objects.all()
        user = _caller(self.context)
        if user is not None:
            visible = access.scope(visible, user)
        for key in value:
            lookup = {"pk": int(key)} if key.isdigit() else {"name": key}
            experiment = visible.filter(**lookup).first()
            if experiment is None:
                missing.append(key)
            else:
                found.append(experiment)
        if missing:
            raise serializers.ValidationError(f"no experiment named {', '.join(missing)}")
        return found

    def validate_concurrency(self, value: int) -> int:
        if value < 1:
            raise serializers.ValidationError("must be at least 1")
        return value

    def validate_interval_seconds(self, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise serializers.ValidationError("must be at least 1 second")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        current = self.instance

        def get(field: str) -> Any:
            if field in attrs:
                return attrs[field]
            return getattr(current, field) if current is not None else None

        experiments = attrs.get("experiments")
        if experiments is None and current is not None:
            experiments = campaign_experiments(current)
        team = get("team") or (Team.objects.get(pk=experiments[0].team_id) if experiments else None)
        if team is not None:
            foreign = foreign_experiments(team.pk, experiments or [])
            if foreign:
                raise serializers.ValidationError(
                    {
                        "experiments": [
                            f"not in the campaign's team {team.name!r}: {', '.join(foreign)}"
                        ]
                    }
                )
            attrs["team"] = team
        kind = get("schedule_kind") or ScheduleKind.NONE
        if kind == ScheduleKind.INTERVAL and not get("interval_seconds"):
            raise serializers.ValidationError(
                {"interval_seconds": ["required when schedule_kind is interval"]}
            )
        if kind == ScheduleKind.CRONTAB:
            try:
                parse_crontab(get("crontab") or "")
            except ValueError as exc:
                raise serializers.ValidationError({"crontab": [str(exc)]}) from None
        return attrs


class CampaignRunItemSerializer(serializers.ModelSerializer):
    experiment = serializers.SlugRelatedField(slug_field="name", read_only=True)
    run_status = serializers.SerializerMethodField()
    verdict = serializers.SerializerMethodField()

    class Meta:
        model = CampaignRunItem
        fields = ["position", "experiment", "run", "run_status", "verdict", "started_at", "error"]

    def get_run_status(self, obj: CampaignRunItem) -> str | None:
        return obj.run.status if obj.run else None

    def get_verdict(self, obj: CampaignRunItem) -> str | None:
        return obj.run.verdict if obj.run else None


class CampaignRunSerializer(serializers.ModelSerializer):
    """One execution of a campaign with its steps."""

    campaign = serializers.SlugRelatedField(slug_field="name", read_only=True)
    steps = CampaignRunItemSerializer(many=True, read_only=True)

    class Meta:
        model = CampaignRun
        fields = [
            "id",
            "campaign",
            "trigger",
            "status",
            "reason",
            "created_at",
            "finished_at",
            "summary",
            "steps",
        ]


class CancelSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500)


class CampaignReportSerializer(serializers.Serializer):
    campaign = serializers.CharField()
    executions = serializers.ListField(child=serializers.DictField())
    targets = serializers.ListField(
        child=serializers.DictField(),
        help_text="Per target: scored runs in time order (score, low, high, regression flag).",
    )


class UsernamesField(serializers.ListField):
    child = serializers.CharField()

    def to_internal_value(self, data: Any) -> list[Any]:
        names = super().to_internal_value(data)
        users = list(get_user_model().objects.filter(username__in=names))
        unknown = sorted(set(names) - {u.username for u in users})
        if unknown:
            raise serializers.ValidationError(f"no user named {', '.join(unknown)}")
        return users

    def to_representation(self, value: Any) -> list[str]:
        return sorted(u.username for u in value.all())


class GameDayNoteSerializer(serializers.ModelSerializer):
    author = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = GameDayNote
        fields = ["id", "at", "author", "text"]
        read_only_fields = ["id", "at", "author"]


class GameDaySerializer(serializers.ModelSerializer):
    """A game day: a campaign stepped through by hand, with observers and notes."""

    campaign = serializers.SlugRelatedField(slug_field="name", queryset=Campaign.objects.all())
    observers = UsernamesField(
        required=False, help_text="Usernames of the people watching (members of the team)."
    )
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    execution = CampaignRunSerializer(read_only=True)
    notes = GameDayNoteSerializer(many=True, read_only=True)

    class Meta:
        model = GameDay
        fields = [
            "id",
            "name",
            "campaign",
            "status",
            "observers",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
            "execution",
            "notes",
        ]
        read_only_fields = ["status", "created_at", "started_at", "finished_at"]

    def validate_campaign(self, value: Campaign) -> Campaign:
        user = _caller(self.context)
        if user is not None and not access.scope(Campaign.objects, user).filter(pk=value.pk):
            # Another team's campaign does not exist for the caller.
            raise serializers.ValidationError(f"Object with name={value.name} does not exist.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        campaign = attrs.get("campaign") or getattr(self.instance, "campaign", None)
        if campaign is not None:
            _check_observers(campaign, attrs.get("observers", []))
        return attrs


def _check_observers(campaign: Campaign, observers: list[Any]) -> None:
    outsiders = non_members(campaign.team_id, observers)
    if outsiders:
        raise serializers.ValidationError(
            {"observers": [f"not members of team {campaign.team.name!r}: {', '.join(outsiders)}"]}
        )


class GameDayUpdateSerializer(serializers.Serializer):
    """Replace a game day's observers; pass ``context={"campaign": ...}`` to check them."""

    observers = UsernamesField(help_text="Usernames of the people watching (replaces the list).")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        campaign = self.context.get("campaign")
        if campaign is not None:
            _check_observers(campaign, attrs.get("observers", []))
        return attrs


class TimelineSerializer(serializers.Serializer):
    game_day = serializers.IntegerField()
    name = serializers.CharField()
    campaign = serializers.CharField()
    status = serializers.CharField()
    observers = serializers.ListField(child=serializers.CharField())
    entries = serializers.ListField(
        child=serializers.DictField(), help_text="at, kind, text (and run or author)"
    )
