"""Routes of the campaigns API (mounted at ``/api/v1/``)."""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from campaigns.api import views

router = SimpleRouter()
router.register("campaigns", views.CampaignViewSet, basename="campaign")
router.register("campaign-runs", views.CampaignRunViewSet, basename="campaign-run")
router.register("game-days", views.GameDayViewSet, basename="game-day")

urlpatterns = router.urls
