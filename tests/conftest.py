"""Shared fixtures: users and API clients per role, and factories for targets, specs and
experiments.

Factories are plain callables returned by fixtures so a test can make several objects
with small variations (``make_spec(duration="5s")``) instead of mutating shared dicts.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db.backends.signals import connection_created
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from scep.permissions import ADMIN, APPROVER, OPERATOR, VIEWER, ensure_roles
from tests.support.fixtures import (  # noqa: F401  (fixtures re-exported for every test)
    broker_dir,
    spawn,
    stack,
    start_agent,
    start_worker,
)

DEMO_CONFIG: dict[str, Any] = {
    "base_url": "http://127.0.0.1:19101",
    "proxies": {"downstream": {"listen": "127.0.0.1:19101", "upstream": "127.0.0.1:19100"}},
    "processes": {"worker": {"name": "demo-worker"}},
}

VALID_SPEC: dict[str, Any] = {
    "name": "latency-demo",
    "description": "300 ms on the downstream proxy",
    "target": "demo",
    "fault": {"type": "network.latency", "params": {"proxy": "downstream", "latency_ms": 300}},
    "duration": "20s",
    "baseline": "10s",
    "recovery": "10s",
    "metrics": [
        {
            "name": "latency",
            "better": "lower",
            "unit": "s",
            "probe": {"url": "http://127.0.0.1:19101/api/items"},
            "measure": "latency_p95",
        },
        {
            "name": "error_rate",
            "better": "lower",
            "probe": {"url": "http://127.0.0.1:19101/api/items"},
            "measure": "error_rate",
        },
    ],
    "hypothesis": [
        {"metric": "latency", "aggregate": "p95", "operator": "<=", "threshold": 0.25},
    ],
    "stop_conditions": [
        {"metric": "error_rate", "aggregate": "mean", "operator": ">", "threshold": 0.5},
    ],
}


def _allow_audit_truncate(sender: Any, connection: Any, **kwargs: Any) -> None:
    """The test database is reset with TRUNCATE between transactional tests; PostgreSQL
    refuses that on the audit table unless the session says so (audit migration 0002)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET scep.audit_truncate_ok = 'on'")


connection_created.connect(_allow_audit_truncate)


def _user(django_user_model: Any, username: str, role: str | None, **extra: Any) -> Any:
    # No password: hashing one costs ~0.5 s per user, and the API tests use tokens.
    user = django_user_model.objects.create_user(username=username, password=None, **extra)
    if role is not None:
        user.groups.add(Group.objects.get(name=role))
    return user


def _client(user: Any | None) -> APIClient:
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def roles(db: Any) -> None:
    """The role groups (post_migrate makes them too once the signal is hooked up)."""
    ensure_roles()


@pytest.fixture
def viewer(roles: None, django_user_model: Any) -> Any:
    return _user(django_user_model, "vera-viewer", VIEWER)


@pytest.fixture
def operator(roles: None, django_user_model: Any) -> Any:
    return _user(django_user_model, "otto-operator", OPERATOR)


@pytest.fixture
def approver(roles: None, django_user_model: Any) -> Any:
    return _user(django_user_model, "april-approver", APPROVER)


@pytest.fixture
def approver_client(approver: Any) -> APIClient:
    return _client(approver)


@pytest.fixture
def admin_user(roles: None, django_user_model: Any) -> Any:
    """An admin by group membership (not a superuser), to test the role itself."""
    return _user(django_user_model, "ada-admin", ADMIN)


@pytest.fixture
def norole_user(roles: None, django_user_model: Any) -> Any:
    return _user(django_user_model, "nora-norole", None)


@pytest.fixture
def anon_client() -> APIClient:
    return APIClient()


@pytest.fixture
def viewer_client(viewer: Any) -> APIClient:
    return _client(viewer)


@pytest.fixture
def operator_client(operator: Any) -> APIClient:
    return _client(operator)


@pytest.fixture
def admin_client(admin_user: Any) -> APIClient:
    """Overrides pytest-django's ``admin_client``: token-authenticated, admin by role."""
    return _client(admin_user)


@pytest.fixture
def client_for(
    anon_client: APIClient,
    viewer_client: APIClient,
    operator_client: APIClient,
    approver_client: APIClient,
    admin_client: APIClient,
) -> Callable[[str], APIClient]:
    """``client_for("operator")`` — for tests parametrized over roles."""
    clients = {
        "anonymous": anon_client,
        VIEWER: viewer_client,
        OPERATOR: operator_client,
        APPROVER: approver_client,
        ADMIN: admin_client,
    }
    return clients.__getitem__


@pytest.fixture
def make_target(db: Any) -> Callable[..., Any]:
    """Create a target (directly: tests of the audit trail call the API for theirs)."""
    from experiments.models import Target

    def _make(name: str = "demo", **fields: Any) -> Target:
        fields.setdefault("config", copy.deepcopy(DEMO_CONFIG))
        return Target.objects.create(name=name, **fields)

    return _make


@pytest.fixture
def target(make_target: Callable[..., Any]) -> Any:
    return make_target()


@pytest.fixture
def make_spec() -> Callable[..., dict[str, Any]]:
    """A fresh valid spec dict; keyword arguments replace top-level fields."""

    def _make(**overrides: Any) -> dict[str, Any]:
        spec = copy.deepcopy(VALID_SPEC)
        spec.update(overrides)
        return spec

    return _make


@pytest.fixture
def valid_spec(make_spec: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    return make_spec()


@pytest.fixture
def make_experiment(target: Any, make_spec: Callable[..., dict[str, Any]]) -> Callable[..., Any]:
    """Create an experiment through the catalog service (so it has its version row)."""
    from experiments.services.catalog import create_experiment

    def _make(**overrides: Any) -> Any:
        return create_experiment(make_spec(**overrides), actor=None, source="system")

    return _make


@pytest.fixture
def experiment(make_experiment: Callable[..., Any]) -> Any:
    return make_experiment()
