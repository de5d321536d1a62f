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
from rest_framework.request import Request
from rest_framework.response import Response

from analysis import services
from analysis.api import serializers as s
from analysis.models import Finding, Suggestion
from audit.models import AuditSource
from experiments.models import Run, Target
from scep.permissions import OPERATOR, VIEWER

READ = {"list": VIEWER, "retrieve": VIEWER}


class FindingViewSet(viewsets.ReadOnlyModelViewSet):
    """Findings of every run (filter with ``?run=ID``, ``?kind=``, ``?severity=``)."""

    serializer_class = s.RunFindingSerializer
    required_roles = READ

    def get_queryset(self):
        qs = Finding.objects.all()
        for field in ("run", "kind", "severity", "metric"):
            if value := self.request.query_params.get(field):
                qs = qs.filter(**{field: value})
        return qs


class SuggestionViewSet(viewsets.ReadOnlyModelViewSet):
    """Suggested next experiments (filter with ``?run=ID``, ``?status=``, ``?kind=``)."""

    serializer_class = s.SuggestionSerializer
    required_roles = {**READ, "accept": OPERATOR}

    def get_queryset(self):
        qs = Suggestion.objects.select_related("experiment")
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

    @extend_schema(
        parameters=[OpenApiParameter("export", str, enum=["json", "html"])],
        responses={200: OpenApiTypes.OBJECT},
    )
    @action(detail=True, methods=["get"])
    def report(self, request: Request, pk: str | None = None):
        """The full report (``?export=html`` for the self-contained HTML file)."""
        run = self.get_object()
        report = services.build_report(run)
        if request.query_params.get("export") == "html":
            from analysis.report import render_html

            response = HttpResponse(render_html(report), content_type="text/html")
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


class TargetScoresViewSet(viewsets.GenericViewSet, mixins.RetrieveModelMixin):
    """A target's resilience score per run, with its trend."""

    queryset = Target.objects.all()
    required_roles = {"retrieve": VIEWER}

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        target = get_object_or_404(Target, pk=pk)
        return Response(services.target_scores(target))
