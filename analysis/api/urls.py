"""Routes of the analysis API (mounted at ``/api/v1/``)."""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from analysis.api import views

router = SimpleRouter()
router.register("findings", views.FindingViewSet, basename="finding")
router.register("suggestions", views.SuggestionViewSet, basename="suggestion")

run_analysis = views.RunAnalysisViewSet
urlpatterns = [
    path("runs/<int:pk>/report/", run_analysis.as_view({"get": "report"}), name="run-report"),
    path(
        "runs/<int:pk>/recommendations/",
        run_analysis.as_view({"get": "recommendations"}),
        name="run-recommendations",
    ),
    path("runs/<int:pk>/export/<str:fmt>/", views.RunExportView.as_view(), name="run-export"),
    path(
        "targets/<int:pk>/scores/",
        views.TargetScoresViewSet.as_view({"get": "retrieve"}),
        name="target-scores",
    ),
    *router.urls,
]
