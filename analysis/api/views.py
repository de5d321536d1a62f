"""Analysis endpoints: a run's report, findings, recommendations and suggestions; a
target's scores; accepting a suggestion (which creates — and optionally starts — the
experiment)."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analysis import report_cache, services
from analysis.api import serializers as s
from analysis.exports import FORMATS, UnknownFormat, export_report, export_run
from analysis.models import Finding, Suggestion
from audit.models import AuditSource
from experiments.models import Run, Target
from experiments.services import access
from scep.permissions import OPERATOR, VIEWER

READ = {"list": VIEWER, "retrieve": VIEWER}


class FindingViewSet(viewsets.ReadOnlyModelViewSet):
    """Findings of every run (filter with ``?run=ID``, ``?kind=``, ``?severity=``)."""

    serializer_class = s.RunFindingSerializer
    required_roles = READ
    team_scoped = True

    def get_queryset(self):
        qs = access.scope(Finding.objects.all(), self.request.user)
        for field in ("run", "kind", "severity", "metric"):
            if value := self.request.query_params.get(field):
                qs = qs.filter(**{field: value})
        return qs


class SuggestionViewSet(viewsets.ReadOnlyModelViewSet):
    """Suggested next experiments (filter with ``?run=ID``, ``?status=``, ``?kind=``)."""

    serializer_class = s.SuggestionSerializer
    required_roles = {**READ, "accept": OPERATOR}
    team_scoped = True

    def get_queryset(self):
        qs = access.scope(Suggestion.objects.select_related("experiment"), self.request.user)
        for field in ("run", "status", "kind"):
            if value := self.request.query_params.get(field):
                qs = qs.filter(**{field: value})
        return qs

    @extend_schema(request=s.AcceptSuggestionSerializer, responses={201: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"])
    def accept(self, request: Request, pk: str | None = None) -> Response:
        """Create the suggested experiment; with ``{"start": true}`` also start a run."""
        from experiments.api.serializers import ExperimentSerializer, RunDetailSerializer
        from experiments.services.runs import start_run

        suggestion = self.get_object()
        ser = s.AcceptSuggestionSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        experiment = services.accept_suggestion(
            suggestion, actor=request.user, source=AuditSource.API
        )
        body = {"experiment": ExperimentSerializer(experiment).data}
        if ser.validated_data["start"]:
            run = start_run(experiment, actor=request.user, source=AuditSource.API)
            body["run"] = RunDetailSerializer(run).data
        return Response(body, status=status.HTTP_201_CREATED)


class RunAnalysisViewSet(viewsets.GenericViewSet):
    """A run's analysis as documents: the report, its recommendations."""

    queryset = Run.objects.select_related("experiment__target")
    required_roles = {"report": VIEWER, "recommendations": VIEWER}
    team_scoped = True

    def get_queryset(self):
        return access.scope(super().get_queryset(), self.request.user)

    @extend_schema(
        parameters=[OpenApiParameter("export", str, enum=["json", "html"])],
        responses={200: OpenApiTypes.OBJECT},
    )
    @action(detail=True, methods=["get"])
    def report(self, request: Request, pk: str | None = None):
        """The full report (``?export=html`` for the self-contained HTML file)."""
        run = self.get_object()
        report = report_cache.report(run)  # the run was just loaded: no refresh
        if request.query_params.get("export") == "html":  # kept for older clients
            export = export_report(report, "html")
            response = HttpResponse(export.content, content_type=export.content_type)
            response["Content-Disposition"] = f'attachment; filename="run-{run.pk}.html"'
            return response
        return Response(report)

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def recommendations(self, request: Request, pk: str | None = None) -> Response:
        run = self.get_object()
        analysis = (run.summary or {}).get("analysis", {})
        return Response(
            {
                "run": run.pk,
                "score": analysis.get("score"),
                "recommendations": analysis.get("recommendations", []),
            }
        )


class FirstRendererNegotiation(DefaultContentNegotiation):
    """Exports answer with their own media type whatever ``Accept`` says, so a CI job
    asking for ``application/xml`` gets the JUnit file rather than a 406."""

    def select_renderer(self, request, renderers, format_suffix=None):  # type: ignore[override]
        return renderers[0], renderers[0].media_type


_EXPORT_RESPONSES = {
    (200, content_type.split(";")[0]): OpenApiTypes.STR for content_type, _ in FORMATS.values()
}


class RunExportView(APIView):
    """A run's report as a downloadable file: ``html`` (self-contained, charts inline),
    ``md`` (Markdown), ``json``, or ``junit`` (JUnit XML for CI systems: a testsuite per
    run, a testcase per hypothesis rule, per metric and for the verdict)."""

    required_roles = {"GET": VIEWER}
    content_negotiation_class = FirstRendererNegotiation
    team_scoped = True

    @extend_schema(
        operation_id="runs_export",
        parameters=[
            OpenApiParameter("fmt", str, OpenApiParameter.PATH, enum=list(FORMATS)),
        ],
        responses={**_EXPORT_RESPONSES, 400: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT},
    )
    def get(self, request: Request, pk: int, fmt: str) -> HttpResponse:
        runs = access.scope(Run.objects.select_related("experiment__target"), request.user)
        run = get_object_or_404(runs, pk=pk)
        try:
            export = export_run(run, fmt)
        except UnknownFormat as exc:
            raise ValidationError({"fmt": [str(exc)]}) from None
        response = HttpResponse(export.content, content_type=export.content_type)
        response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
        return response


class TargetScoresViewSet(viewsets.GenericViewSet, mixins.RetrieveModelMixin):
    """A target's resilience score per run, with its trend."""

    queryset = Target.objects.all()
    required_roles = {"retrieve": VIEWER}
    team_scoped = True

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        target = get_object_or_404(access.scope(Target.objects.all(), request.user), pk=pk)
        return Response(services.target_scores(target))
