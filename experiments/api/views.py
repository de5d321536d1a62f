"""REST API views.

Each viewset declares two things and little else: who may do what (``required_roles``,
read by ``scep.permissions.RolePermission``) and how input is validated. The work itself
is done by ``experiments.services``, which also write the audit trail, so that the API,
the admin and the CLI cannot drift apart in what a change means.
"""

from __future__ import annotations

import json
from typing import Any

from django.db.models import QuerySet
from django.http import Http404, HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, renderers, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from audit import services as audit_services
from audit.models import AuditEntry, AuditSource
from experiments.api import serializers as s
from experiments.choices import RunStatus, Verdict
from experiments.models import Experiment, KillSwitch, Run, Target
from experiments.services import access, catalog, run_list, runs
from governance.models import default_team_id
from injectors.base import Injector
from injectors.models import ActiveFault, Agent, FaultState
from injectors.registry import get_injector, known_types
from scep.api_params import parse_id
from scep.permissions import ADMIN, APPROVER, OPERATOR, VIEWER

SOURCE = AuditSource.API

READ = {"list": VIEWER, "retrieve": VIEWER}


def _choice_filter(
    queryset: QuerySet, request: Request, param: str, field: str, choices: list[str]
) -> QuerySet:
    """Filter on a choice query parameter, refusing unknown values instead of ignoring them."""
    value = request.query_params.get(param)
    if not value:
        return queryset
    if value not in choices:
        raise serializers.ValidationError({param: [f"one of: {', '.join(choices)}"]})
    return queryset.filter(**{field: value})


# --- Targets --------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="List targets"),
    create=extend_schema(summary="Register a target (admin)"),
    destroy=extend_schema(summary="Delete a target without experiments (admin)"),
)
class TargetViewSet(viewsets.ModelViewSet):
    """Systems registered for experiments; only admins change them."""

    queryset = Target.objects.select_related("team")
    serializer_class = s.TargetSerializer
    team_scoped = True
    required_roles = {
        **READ,
        "create": ADMIN,
        "update": ADMIN,
        "partial_update": ADMIN,
        "destroy": ADMIN,
    }

    def get_queryset(self) -> QuerySet:
        return access.scope(super().get_queryset(), self.request.user)

    def perform_create(self, serializer: s.TargetSerializer) -> None:
        team = serializer.validated_data.get("team")
        team_id = team.pk if team is not None else default_team_id()
        access.require_team_role(self.request.user, team_id, ADMIN, what="register a target")
        serializer.instance = catalog.create_target(
            actor=self.request.user, source=SOURCE, **serializer.validated_data
        )

    def perform_update(self, serializer: s.TargetSerializer) -> None:
        team = serializer.validated_data.get("team")
        if team is not None and team.pk != serializer.instance.team_id:
            access.require_team_role(self.request.user, team.pk, ADMIN, what="move a target there")
        serializer.instance = catalog.update_target(
            serializer.instance,
            actor=self.request.user,
            source=SOURCE,
            **serializer.validated_data,
        )

    def perform_destroy(self, instance: Any) -> None:
        catalog.delete_target(instance, actor=self.request.user, source=SOURCE)


# --- Experiments ----------------------------------------------------------------------


@extend_schema_view(
    create=extend_schema(
        summary="Create an experiment from a spec",
        request=s.SpecInputSerializer,
        responses={201: s.ExperimentSerializer},
    ),
    update=extend_schema(
        summary="Replace the spec (a changed spec becomes a new version)",
        request=s.SpecInputSerializer,
        responses={200: s.ExperimentSerializer},
    ),
)
class ExperimentViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Versioned experiment specs.

    The spec is one document, so there is no PATCH: PUT sends the whole spec, and an
    unchanged spec keeps its version.
    """

    queryset = Experiment.objects.select_related("target", "created_by")
    serializer_class = s.ExperimentSerializer
    team_scoped = True
    required_roles = {
        **READ,
        "versions": VIEWER,
        "create": OPERATOR,
        "update": OPERATOR,
        "destroy": OPERATOR,
        "validate": OPERATOR,
        "start": OPERATOR,
    }

    def _spec_input(
        self, experiment: Experiment | None = None, *, check_name: bool = True
    ) -> dict[str, Any]:
        context = {"experiment": experiment, "check_name": check_name}
        ser = s.SpecInputSerializer(
            data=s.SpecInputSerializer.wrap(self.request.data),
            context={**self.get_serializer_context(), **context},
        )
        ser.is_valid(raise_exception=True)
        self._require_target_team(ser.spec_data)
        return ser.spec_data

    def _require_target_team(self, spec_data: dict[str, Any]) -> None:
        """Experiments go where their target is: the operator role is needed *there*."""
        name = spec_data.get("target") if isinstance(spec_data, dict) else None
        team_id = Target.objects.filter(name=name).values_list("team_id", flat=True).first()
        if isinstance(name, str) and team_id is not None:
            access.require_team_role(
                self.request.user, team_id, OPERATOR, what=f"experiment on target {name!r}"
            )

    def get_queryset(self) -> QuerySet:
        return access.scope(super().get_queryset(), self.request.user)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        experiment = catalog.create_experiment(
            self._spec_input(), actor=request.user, source=SOURCE
        )
        return Response(s.ExperimentSerializer(experiment).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        experiment = self.get_object()
        experiment = catalog.update_experiment(
            experiment, self._spec_input(experiment), actor=request.user, source=SOURCE
        )
        return Response(s.ExperimentSerializer(experiment).data)

    def perform_destroy(self, instance: Experiment) -> None:
        catalog.delete_experiment(instance, actor=self.request.user, source=SOURCE)

    @extend_schema(
        summary="List the versions of an experiment, newest first",
        responses=s.ExperimentVersionSerializer(many=True),
    )
    @action(
        detail=True,
        methods=["get"],
        serializer_class=s.ExperimentVersionSerializer,
        pagination_class=None,
    )
    def versions(self, request: Request, pk: str | None = None) -> Response:
        # Not paginated: an experiment has tens of versions, not thousands.
        experiment = self.get_object()
        queryset = experiment.versions.select_related("created_by").order_by("-version")
        return Response(s.ExperimentVersionSerializer(queryset, many=True).data)

    @extend_schema(
        summary="Validate a spec and describe its fault, without storing anything",
        request=s.SpecInputSerializer,
        responses={200: s.ValidationResultSerializer},
    )
    @action(detail=False, methods=["post"], serializer_class=s.SpecInputSerializer)
    def validate(self, request: Request) -> Response:
        return Response(catalog.preview_experiment(self._spec_input(check_name=False)))

    @extend_schema(
        summary="Start a run of the current version",
        request=s.StartRunSerializer,
        responses={201: s.RunDetailSerializer},
    )
    @action(detail=True, methods=["post"], serializer_class=s.StartRunSerializer)
    def start(self, request: Request, pk: str | None = None) -> Response:
        experiment = self.get_object()
        ser = s.StartRunSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        run = runs.start_run(
            experiment, actor=request.user, source=SOURCE, dry_run=ser.validated_data["dry_run"]
        )
        return Response(s.RunDetailSerializer(run).data, status=status.HTTP_201_CREATED)


# --- Runs -----------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="List runs, newest first",
        parameters=[
            OpenApiParameter("status", str, enum=list(RunStatus.values)),
            OpenApiParameter("verdict", str, enum=list(Verdict.values)),
            OpenApiParameter("experiment", str, description="Experiment id or name."),
        ],
    ),
    create=extend_schema(
        summary="Start a run of an experiment (by id or name)",
        request=s.CreateRunSerializer,
        responses={201: s.RunDetailSerializer},
    ),
)
class RunViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Runs are created by starting an experiment and end by themselves or by an abort."""

    queryset = Run.objects.select_related("experiment", "started_by")
    team_scoped = True
    required_roles = {**READ, "create": OPERATOR, "abort": OPERATOR, "approve": APPROVER}

    def get_serializer_class(self) -> type[serializers.Serializer]:
        if self.action == "list":
            return s.RunSerializer
        if self.action == "create":
            return s.CreateRunSerializer
        if self.action == "abort":
            return s.AbortRunSerializer
        if self.action == "approve":
            return serializers.Serializer
        return s.RunDetailSerializer

    def get_queryset(self) -> QuerySet:
        queryset = access.scope(super().get_queryset(), self.request.user)
        if self.action != "list":
            return queryset.prefetch_related("events", "findings", "faults__target")
        queryset = _choice_filter(queryset, self.request, "status", "status", RunStatus.values)
        queryset = _choice_filter(queryset, self.request, "verdict", "verdict", Verdict.values)
        experiment = self.request.query_params.get("experiment")
        if experiment:
            number = parse_id(experiment)
            if number is not None:
                queryset = queryset.filter(experiment_id=number)
            else:
                queryset = queryset.filter(experiment__name=experiment)
        return queryset

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if request.accepted_renderer.format != "json":
            return Response(self._list_data())
        teams = access.teams_with_role(request.user, VIEWER)
        # The rendered bytes are what is cached (encoding a page was a tenth of a hit).
        variant = f"{request.build_absolute_uri()}|{request.accepted_media_type}"
        renderer, media_type = request.accepted_renderer, request.accepted_media_type

        def render() -> bytes:
            context = self.get_renderer_context()
            return renderer.render(self._list_data(), media_type, context)

        body = run_list.cached_page(request, teams, variant, render)
        return HttpResponse(body, content_type=renderer.media_type)

    def _list_data(self) -> Any:
        # Same JSON as RunSerializer, read as plain column values (see RunSerializer.rows).
        values = self.get_queryset().values(*s.RunSerializer.COLUMNS)
        page = self.paginate_queryset(values)
        if page is None:
            return s.RunSerializer.rows(values)
        return self.get_paginated_response(s.RunSerializer.rows(page)).data

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        ser = s.CreateRunSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        experiment = ser.validated_data["experiment"]
        access.require_team_role(
            request.user, experiment.team_id, OPERATOR, what=f"run {experiment.name!r}"
        )
        run = runs.start_run(
            ser.validated_data["experiment"],
            actor=request.user,
            source=SOURCE,
            dry_run=ser.validated_data["dry_run"],
        )
        return Response(s.RunDetailSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Abort a run; its fault is reverted within one tick",
        request=s.AbortRunSerializer,
        responses={202: s.RunDetailSerializer},
    )
    @action(detail=True, methods=["post"])
    def abort(self, request: Request, pk: str | None = None) -> Response:
        run = self.get_object()
        ser = s.AbortRunSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        run = runs.abort_run(run, actor=request.user, source=SOURCE, **ser.validated_data)
        return Response(s.RunDetailSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Approve a run held by its environment's policy (approver; not the requester)",
        request=None,
        responses={202: s.RunDetailSerializer},
    )
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        run = self.get_object()
        try:
            run = runs.approve_run(run, actor=request.user, source=SOURCE)
        except runs.ApprovalRefused as exc:
            raise PermissionDenied(str(exc)) from None
        return Response(s.RunDetailSerializer(run).data, status=status.HTTP_202_ACCEPTED)


# --- Kill switch ----------------------------------------------------------------------


class KillSwitchViewSet(viewsets.GenericViewSet):
    """The global emergency stop. Operators may pull it; only admins may let go."""

    serializer_class = s.KillSwitchSerializer
    queryset = KillSwitch.objects.none()
    pagination_class = None
    required_roles = {"state": VIEWER, "engage": OPERATOR, "release": ADMIN}

    @extend_schema(summary="Kill switch state", responses=s.KillSwitchSerializer)
    def state(self, request: Request) -> Response:
        return Response(s.KillSwitchSerializer(KillSwitch.get()).data)

    @extend_schema(
        summary="Engage: abort every active run, revert every open fault, refuse new runs",
        request=s.EngageSerializer,
        responses=s.EngageResultSerializer,
    )
    def engage(self, request: Request) -> Response:
        ser = s.EngageSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        counts = runs.engage_kill_switch(actor=request.user, source=SOURCE, **ser.validated_data)
        return Response({**s.KillSwitchSerializer(KillSwitch.get()).data, **counts})

    @extend_schema(
        summary="Release: allow new runs again", request=None, responses=s.KillSwitchSerializer
    )
    def release(self, request: Request) -> Response:
        runs.release_kill_switch(actor=request.user, source=SOURCE)
        return Response(s.KillSwitchSerializer(KillSwitch.get()).data)


# --- Read-only views ------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("state", str, enum=list(FaultState.values)),
            OpenApiParameter("run", int),
        ]
    )
)
class FaultViewSet(viewsets.ReadOnlyModelViewSet):
    """The active-fault ledger: every fault ever written, open ones first to look at."""

    queryset = ActiveFault.objects.select_related("target")
    serializer_class = s.FaultSerializer
    required_roles = READ
    team_scoped = True

    def get_queryset(self) -> QuerySet:
        queryset = access.scope(super().get_queryset(), self.request.user)
        if self.action != "list":
            return queryset
        queryset = _choice_filter(queryset, self.request, "state", "state", FaultState.values)
        run = self.request.query_params.get("run")
        if run:
            number = parse_id(run)
            if number is None:
                raise serializers.ValidationError({"run": ["must be a run id"]})
            queryset = queryset.filter(run_id=number)
        return queryset


class AgentViewSet(viewsets.ReadOnlyModelViewSet):
    """Agents and whether they are heard from."""

    queryset = Agent.objects.all()
    serializer_class = s.AgentSerializer
    required_roles = READ


class FaultTypeViewSet(viewsets.ViewSet):
    """The fault types this installation knows, each with its parameters' JSON schema."""

    lookup_field = "name"
    lookup_value_regex = r"[A-Za-z0-9_.\-]+"
    serializer_class = s.FaultTypeSerializer
    required_roles = READ

    @extend_schema(responses=s.FaultTypeSerializer(many=True))
    def list(self, request: Request) -> Response:
        injectors = [get_injector(name) for name in known_types()]
        return Response(s.FaultTypeSerializer(injectors, many=True).data)

    @extend_schema(
        responses=s.FaultTypeSerializer,
        parameters=[OpenApiParameter("name", OpenApiTypes.STR, OpenApiParameter.PATH)],
    )
    def retrieve(self, request: Request, name: str | None = None) -> Response:
        if name not in known_types():
            raise Http404(f"unknown fault type {name!r}")
        injector: Injector = get_injector(name)
        return Response(s.FaultTypeSerializer(injector).data)


_AUDIT_FILTERS = [
    OpenApiParameter("actor", str, description="Username of who acted."),
    OpenApiParameter("action", str, description="e.g. run.start"),
    OpenApiParameter("source", str, enum=list(AuditSource.values)),
    OpenApiParameter("object_type", str, description="e.g. experiments.run"),
    OpenApiParameter("object_id", str, description="Primary key of the object."),
    OpenApiParameter("since", str, description="ISO 8601 date or datetime (inclusive)."),
    OpenApiParameter("until", str, description="ISO 8601 date or datetime (inclusive)."),
]


class CSVRenderer(renderers.BaseRenderer):
    """Only announces ``?format=csv`` to content negotiation; the export view streams the
    CSV text itself (``audit.services.export_csv``)."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: Any = None, renderer_context: Any = None):
        if isinstance(data, str | bytes):
            return data
        return json.dumps(data)  # an error body: still readable


@extend_schema_view(list=extend_schema(parameters=_AUDIT_FILTERS))
class AuditEntryViewSet(viewsets.ReadOnlyModelViewSet):
    """The append-only audit trail (admins only: it names people and what they did)."""

    queryset = AuditEntry.objects.all()
    serializer_class = s.AuditEntrySerializer
    required_roles = {"list": ADMIN, "retrieve": ADMIN, "*": ADMIN}

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any):
        # Errors (400, 403) keep the API's JSON shape even when CSV was asked for.
        if getattr(response, "exception", False):
            request.accepted_renderer = renderers.JSONRenderer()
            request.accepted_media_type = request.accepted_renderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)

    def get_queryset(self) -> QuerySet:
        queryset = super().get_queryset()
        if self.action not in ("list", "export"):
            return queryset
        try:
            return audit_services.filter_entries(queryset, self.request.query_params)
        except audit_services.AuditFilterError as exc:
            raise serializers.ValidationError(exc.errors) from None

    @extend_schema(
        summary="Export the (filtered) trail, oldest first, as CSV or JSON",
        parameters=[
            *_AUDIT_FILTERS,
            OpenApiParameter("format", str, enum=["csv", "json"], description="Default json."),
        ],
        responses={
            (200, "application/json"): s.AuditEntrySerializer(many=True),
            (200, "text/csv"): OpenApiTypes.STR,
        },
    )
    @action(
        detail=False,
        methods=["get"],
        pagination_class=None,
        renderer_classes=[renderers.JSONRenderer, CSVRenderer],
    )
    def export(self, request: Request) -> Any:
        rows = audit_services.export_rows(self.get_queryset())
        if request.accepted_renderer.format == "csv":
            response = StreamingHttpResponse(
                audit_services.export_csv(rows), content_type="text/csv; charset=utf-8"
            )
            response["Content-Disposition"] = 'attachment; filename="scep-audit.csv"'
            return response
        return Response(list(rows))
