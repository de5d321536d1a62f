"""Routes of the web UI (mounted at the site root by ``scep.urls``)."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path, re_path

from web import campaign_views as cviews
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
    path("campaigns/", cviews.campaign_list, name="campaigns"),
    path("campaigns/new/", cviews.campaign_new, name="campaign-new"),
    path("campaigns/<int:pk>/", cviews.campaign_detail, name="campaign"),
    path("campaigns/<int:pk>/edit/", cviews.campaign_edit, name="campaign-edit"),
    path("campaigns/<int:pk>/pause/", cviews.campaign_pause, name="campaign-pause"),
    path("campaigns/<int:pk>/resume/", cviews.campaign_resume, name="campaign-resume"),
    path("campaigns/<int:pk>/run/", cviews.campaign_trigger, name="campaign-trigger"),
    path("campaigns/<int:pk>/report/", cviews.campaign_report_page, name="campaign-report"),
    path("campaign-runs/<int:pk>/cancel/", cviews.execution_cancel, name="campaign-run-cancel"),
    path("game-days/", cviews.game_day_list, name="game-days"),
    path("game-days/new/", cviews.game_day_new, name="game-day-new"),
    path("game-days/<int:pk>/", cviews.game_day_detail, name="game-day"),
    path("game-days/<int:pk>/next-step/", cviews.game_day_next_step, name="game-day-next"),
    path("game-days/<int:pk>/notes/", cviews.game_day_note, name="game-day-note"),
    path("game-days/<int:pk>/observers/", cviews.game_day_observers, name="game-day-observers"),
    path("game-days/<int:pk>/finish/", cviews.game_day_finish, name="game-day-finish"),
    re_path(r"^static/(?P<path>.+)$", views.static_asset, name="static-asset"),
]
