"""Routes of the notifications API (mounted at ``/api/v1/``)."""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from notifications.api import views

router = SimpleRouter()
router.register(
    "notification-channels", views.NotificationChannelViewSet, basename="notification-channel"
)
router.register(
    "notification-deliveries", views.NotificationDeliveryViewSet, basename="notification-delivery"
)

urlpatterns = router.urls
