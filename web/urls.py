"""Routes of the web UI (mounted at the site root by ``scep.urls``)."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path, re_path

from web import views

app_name = "web"

urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="web/login.html", redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.dashboard, name="dashboard"),
    path("dashboard/live/", views.dashboard_live, name="dashboard-live"),
    path("kill-switch/", views.kill_switch, name="kill-switch"),
    path("targets/", views.target_list, name="targets"),
    path("experiments/", views.experiment_list, name="experiments"),
    path("experiments/new/", views.experiment_new, name="experiment-new"),
    path("experiments/check/", views.experiment_check, name="experiment-check"),
    path("experiments/<int:pk>/", views.experiment_detail, name="experiment"),
    path("experiments/<int:pk>/edit/", views.experiment_edit, name="experiment-edit"),
    path("experiments/<int:pk>/start/", views.experiment_start, name="experiment-start"),
    path("runs/", views.run_list, name="runs"),
    path("runs/<int:pk>/", views.run_detail, name="run"),
    path("runs/<int:pk>/live/", views.run_live, name="run-live"),
    path("runs/<int:pk>/abort/", views.run_abort, name="run-abort"),
    path("runs/<int:pk>/report/", views.run_report, name="report"),
    path("runs/<int:pk>/report/<str:fmt>/", views.run_export, name="report-export"),
    path("suggestions/", views.suggestion_list, name="suggestions"),
    path("suggestions/<int:pk>/accept/", views.suggestion_accept, name="suggestion-accept"),
    re_path(r"^static/(?P<path>.+)$", views.static_asset, name="static-asset"),
]
