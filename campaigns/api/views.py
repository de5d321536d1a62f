"""REST API of campaigns, their executions and game days.

Viewsets declare who may do what (``required_roles``: viewers read, operators write) and
validate input; ``campaigns.services`` does the work and writes the audit trail.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.response import Response

from audit.models import AuditSource
from campaigns import report, services
from campaigns.api import serializers as s
from campaigns.choices import ExecutionStatus, Trigger
from campaigns.models import Campaign, CampaignRun, GameDay
from experiments.services import access
from scep.permissions import OPERATOR, VIEWER

SOURCE = AuditSource.API
READ = {"list": VIEWER, "retrieve": VIEWER}


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "Not possible in the current state."
    default_code = "conflict"


class _Services:
    """Turn the services' state refusals into 409 answers; scope every queryset to the
    caller's teams (other teams' objects are 404) and check roles in the object's team."""

    team_scoped = True

    def get_queryset(self) -> QuerySet:
        return access.scope(super().get_queryset(), self.request.user)  # type: ignore[misc]

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, services.CampaignStateError):
            exc = Conflict(str(exc))
        return super().handle_exception(exc)  # type: ignore[misc]


@extend_schema_view(
    list=extend_schema(summary="List campaigns"),
    create=extend_schema(summary="Create a campaign (its beat schedule follows)"),
    update=extend_schema(summary="Replace a campaign"),
    partial_update=extend_schema(summary="Change some fields of a campaign"),
    destroy=extend_schema(summary="Delete a campaign and its schedule"),
)
class CampaignViewSet(_Services, viewsets.ModelViewSet):
    """Named, ordered sets of experiments with an optional schedule (interval or crontab)."""

    queryset = Campaign.objects.select_related("periodic_task", "created_by")
    serializer_class = s.CampaignSerializer
    required_roles = {
        **READ,
        "report": VIEWER,
        "create": OPERATOR,
        "update": OPERATOR,
        "partial_update": OPERATOR,
        "destroy": OPERATOR,
        "pause": OPERATOR,
        "resume": OPERATOR,
        "trigger": OPERATOR,
    }

    def perform_create(self, serializer: s.CampaignSerializer) -> None:
        data = dict(serializer.validated_data)
        team = data.get("team")
        if team is not None:
            access.require_team_role(
                self.request.user, team.pk, OPERATOR, what="create a campaign there"
            )
        serializer.instance = services.create_campaign(
            actor=self.request.user,
            source=SOURCE,
            name=data.pop("name"),
            experiments=data.pop("experiments"),
            **data,
        )

    def perform_update(self, serializer: s.CampaignSerializer) -> None:
        team = serializer.validated_data.get("team")
        if team is not None and team.pk != serializer.instance.team_id:
            access.require_team_role(
                self.request.user, team.pk, OPERATOR, what="move a campaign there"
            )
        serializer.instance = services.update_campaign(
            serializer.instance, actor=self.request.user, source=SOURCE, **serializer.validated_data
        )

    def perform_destroy(self, instance: Campaign) -> None:
        services.delete_campaign(instance, actor=self.request.user, source=SOURCE)

    @extend_schema(summary="Pause: disable the schedule, launch no further items", request=None)
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        campaign = services.pause_campaign(self.get_object(), actor=request.user, source=SOURCE)
        return Response(s.CampaignSerializer(campaign).data)

    @extend_schema(summary="Resume the schedule and any held executions", request=None)
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        campaign = services.resume_campaign(self.get_object(), actor=request.user, source=SOURCE)
        return Response(s.CampaignSerializer(campaign).data)

    @extend_schema(
        summary="Run the campaign now (refused while paused, running or kill-switched)",
        request=None,
        responses={201: s.CampaignRunSerializer},
    )
    @action(detail=True, methods=["post"])
    def trigger(self, request: Request, pk: str | None = None) -> Response:
        execution = services.trigger_campaign(
            self.get_object(), trigger=Trigger.MANUAL, actor=request.user, source=SOURCE
        )
        return Response(s.CampaignRunSerializer(execution).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Resilience score per target over the campaign's runs, regressions flagged",
        responses=s.CampaignReportSerializer,
    )
    @action(detail=True, methods=["get"], pagination_class=None)
    def report(self, request: Request, pk: str | None = None) -> Response:
        return Response(report.campaign_report(self.get_object()))


@extend_schema_view(
    list=extend_schema(
        summary="List campaign executions, newest first",
        parameters=[
            OpenApiParameter("campaign", str, description="Campaign id or name."),
            OpenApiParameter("status", str, enum=list(ExecutionStatus.values)),
        ],
    )
)
class CampaignRunViewSet(_Services, viewsets.ReadOnlyModelViewSet):
    """Executions of campaigns: scheduled, manual and game days, including skipped ones."""

    queryset = CampaignRun.objects.select_related("campaign").prefetch_related(
        "steps__run", "steps__experiment"
    )
    serializer_class = s.CampaignRunSerializer
    required_roles = {**READ, "cancel": OPERATOR}

    def get_queryset(self) -> QuerySet:
        queryset = super().get_queryset()
        if self.action != "list":
            return queryset
        campaign = self.request.query_params.get("campaign")
        if campaign:
            key = "campaign_id" if campaign.isdigit() else "campaign__name"
            queryset = queryset.filter(**{key: campaign})
        value = self.request.query_params.get("status")
        if value:
            if value not in ExecutionStatus.values:
                raise serializers.ValidationError(
                    {"status": [f"one of: {', '.join(ExecutionStatus.values)}"]}
                )
            queryset = queryset.filter(status=value)
        return queryset

    @extend_schema(
        summary="Cancel an execution: abort its active runs, start no further steps",
        request=s.CancelSerializer,
        responses=s.CampaignRunSerializer,
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        ser = s.CancelSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        execution = services.cancel_execution(
            self.get_object(), actor=request.user, source=SOURCE, **ser.validated_data
        )
        return Response(s.CampaignRunSerializer(execution).data)


@extend_schema_view(
    list=extend_schema(summary="List game days"),
    create=extend_schema(summary="Plan a game day on a campaign"),
    partial_update=extend_schema(
        summary="Replace the observers", request=s.GameDayUpdateSerializer
    ),
)
class GameDayViewSet(
    _Services,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Game days: a campaign run by hand one step at a time, with observers and notes."""

    queryset = GameDay.objects.select_related(
        "campaign", "created_by", "execution"
    ).prefetch_related(
        "observers", "notes__author", "execution__steps__run", "execution__steps__experiment"
    )
    serializer_class = s.GameDaySerializer
    http_method_names = ["get", "post", "patch", "head", "options"]
    required_roles = {
        **READ,
        "timeline": VIEWER,
        "timeline_markdown": VIEWER,
        "create": OPERATOR,
        "partial_update": OPERATOR,
        "next_step": OPERATOR,
        "notes": OPERATOR,
        "finish": OPERATOR,
    }

    def get_serializer_class(self) -> type[serializers.Serializer]:
        if self.action == "partial_update":
            return s.GameDayUpdateSerializer
        if self.action == "notes":
            return s.GameDayNoteSerializer
        return s.GameDaySerializer

    def perform_create(self, serializer: s.GameDaySerializer) -> None:
        data = serializer.validated_data
        access.require_team_role(
            self.request.user,
            data["campaign"].team_id,
            OPERATOR,
            what="plan a game day on this campaign",
        )
        serializer.instance = services.create_game_day(
            campaign=data["campaign"],
            name=data["name"],
            observers=data.get("observers", []),
            actor=self.request.user,
            source=SOURCE,
        )

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        game_day = self.get_object()
        ser = s.GameDayUpdateSerializer(data=request.data, context={"campaign": game_day.campaign})
        ser.is_valid(raise_exception=True)
        services.set_observers(
            game_day, ser.validated_data["observers"], actor=request.user, source=SOURCE
        )
        return Response(s.GameDaySerializer(self.get_object()).data)

    @extend_schema(
        summary="Start the next experiment (refused while the previous one still runs)",
        request=None,
        responses={201: s.GameDaySerializer},
    )
    @action(detail=True, methods=["post"], url_path="next-step")
    def next_step(self, request: Request, pk: str | None = None) -> Response:
        services.next_step(self.get_object(), actor=request.user, source=SOURCE)
        return Response(s.GameDaySerializer(self.get_object()).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Add a timestamped note",
        request=s.GameDayNoteSerializer,
        responses={201: s.GameDayNoteSerializer},
    )
    @action(detail=True, methods=["post"])
    def notes(self, request: Request, pk: str | None = None) -> Response:
        game_day = self.get_object()
        ser = s.GameDayNoteSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        note = services.add_note(
            game_day, text=ser.validated_data["text"], actor=request.user, source=SOURCE
        )
        return Response(s.GameDayNoteSerializer(note).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Finish the game day", request=None, responses=s.GameDaySerializer)
    @action(detail=True, methods=["post"])
    def finish(self, request: Request, pk: str | None = None) -> Response:
        services.finish_game_day(self.get_object(), actor=request.user, source=SOURCE)
        return Response(s.GameDaySerializer(self.get_object()).data)

    @extend_schema(summary="The game day's timeline (JSON)", responses=s.TimelineSerializer)
    @action(detail=True, methods=["get"], pagination_class=None)
    def timeline(self, request: Request, pk: str | None = None) -> Response:
        return Response(report.game_day_timeline(self.get_object()))

    @extend_schema(
        summary="The game day's timeline as Markdown",
        responses={(200, "text/markdown"): OpenApiTypes.STR},
    )
    @action(detail=True, methods=["get"], url_path="timeline/markdown", pagination_class=None)
    def timeline_markdown(self, request: Request, pk: str | None = None) -> HttpResponse:
        text = report.timeline_markdown(report.game_day_timeline(self.get_object()))
        response = HttpResponse(text, content_type="text/markdown; charset=utf-8")
        response["Content-Disposition"] = f'inline; filename="game-day-{pk}.md"'
        return response
