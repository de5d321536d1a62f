"""Top-level URLs: the admin, the versioned REST API with its schema, and the web UI."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from observability import views as observability

api_v1 = [
    path("", include("experiments.api.urls")),
    path("", include("injectors.api.urls")),
    path("", include("analysis.api.urls")),
    path("", include("notifications.api.urls")),
    path("", include("governance.api.urls")),
    path("", include("campaigns.api.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include((api_v1, "api"), namespace="api")),
    path("metrics", observability.metrics, name="metrics"),
    path("healthz", observability.healthz, name="healthz"),
    path("readyz", observability.readyz, name="readyz"),
    # --- Web UI (server-rendered pages at the site root) -----------------------------
    path("", include("web.urls")),
]

# JSON error bodies under /api/ for URLs no view matched (scep.api_errors).
handler404 = "scep.api_errors.not_found"
handler500 = "scep.api_errors.server_error"
