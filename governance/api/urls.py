"""Routes of the governance API (mounted at ``/api/v1/``)."""

from __future__ import annotations

from rest_framework.routers import DefaultRouter

from governance.api import views

router = DefaultRouter()
router.register("policies", views.PolicyViewSet, basename="policy")
router.register("teams", views.TeamViewSet, basename="team")

urlpatterns = router.urls
