"""Routes of the REST API (mounted at ``/api/v1/`` by ``scep.urls``)."""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import DefaultRouter

from experiments.api import views

router = DefaultRouter()
router.register("targets", views.TargetViewSet, basename="target")
router.register("experiments", views.ExperimentViewSet, basename="experiment")
router.register("runs", views.RunViewSet, basename="run")
router.register("faults", views.FaultViewSet, basename="fault")
router.register("agents", views.AgentViewSet, basename="agent")
router.register("fault-types", views.FaultTypeViewSet, basename="fault-type")
router.register("audit", views.AuditEntryViewSet, basename="audit")

# The kill switch is a singleton, not a collection, so it is routed by hand: the router
# would present GET as a "list" and document it as an array.
kill_switch = [
    path(
        "kill-switch/",
        views.KillSwitchViewSet.as_view({"get": "state"}),
        name="kill-switch",
    ),
    path(
        "kill-switch/engage/",
        views.KillSwitchViewSet.as_view({"post": "engage"}),
        name="kill-switch-engage",
    ),
    path(
        "kill-switch/release/",
        views.KillSwitchViewSet.as_view({"post": "release"}),
        name="kill-switch-release",
    ),
]

urlpatterns = [*kill_switch, *router.urls]
