"""Browser-session clients per role for the web UI (the API tests use tokens instead)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client


def _session(user: Any, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


@pytest.fixture
def viewer_web(viewer: Any) -> Client:
    return _session(viewer)


@pytest.fixture
def operator_web(operator: Any) -> Client:
    return _session(operator)


@pytest.fixture
def admin_web(admin_user: Any) -> Client:
    return _session(admin_user)


@pytest.fixture
def norole_web(norole_user: Any) -> Client:
    return _session(norole_user)


@pytest.fixture
def judged(experiment: Any) -> Any:
    from tests.support.reports import judged_run

    return judged_run(experiment)
