"""Routes of the injectors app's API (included at ``/api/v1/`` by ``scep.urls``)."""

from __future__ import annotations

from django.urls import path

from injectors.api import views

urlpatterns = [
    path(
        "failure-flags/active/",
        views.ActiveFailureFlagsView.as_view(),
        name="failure-flags-active",
    ),
]
