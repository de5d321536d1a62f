"""Targets over the API: admin-only writes, validation, and 409 when still referenced."""

from __future__ import annotations

from typing import Any

import pytest

from experiments.models import Target

pytestmark = pytest.mark.django_db

URL = "/api/v1/targets/"


def test_create_and_read_back(admin_client: Any) -> None:
    body = {
        "name": "shop",
        "environment": "staging",
        "config": {"proxies": {"db": {"listen": "127.0.0.1:1", "upstream": "127.0.0.1:2"}}},
        "labels": {"team": "payments"},
    }
    created = admin_client.post(URL, body, format="json")
    assert created.status_code == 201, created.content
    data = admin_client.get(f"{URL}{created.json()['id']}/").json()
    assert data["name"] == "shop"
    assert data["environment"] == "staging"
    assert data["allowed"] is True
    assert data["experiments"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Not A Slug"}, "name"),
        ({"name": "ok", "environment": "moon"}, "environment"),
        ({"name": "ok", "config": [1, 2]}, "config"),
        ({"name": "ok", "config": {"proxies": ["a"]}}, "config"),
        ({"name": "ok", "labels": "x"}, "labels"),
        ({}, "name"),
    ],
)
def test_bad_bodies_name_the_field(admin_client: Any, body: dict[str, Any], field: str) -> None:
    response = admin_client.post(URL, body, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert response.json()["detail"]


def test_duplicate_name_is_400(admin_client: Any, target: Target) -> None:
    response = admin_client.post(URL, {"name": target.name}, format="json")
    assert response.status_code == 400
    assert "name" in response.json()["errors"]


def test_delete_with_experiments_is_409(admin_client: Any, experiment: Any) -> None:
    response = admin_client.delete(f"{URL}{experiment.target_id}/")
    assert response.status_code == 409
    assert "cannot delete" in response.json()["detail"]
    assert Target.objects.filter(pk=experiment.target_id).exists()


def test_rename_with_experiments_is_refused(admin_client: Any, experiment: Any) -> None:
    response = admin_client.patch(
        f"{URL}{experiment.target_id}/", {"name": "renamed"}, format="json"
    )
    assert response.status_code == 400
    assert "name" in response.json()["errors"]


def test_update_records_the_diff(admin_client: Any, target: Target) -> None:
    from audit.models import AuditEntry

    response = admin_client.patch(f"{URL}{target.pk}/", {"allowed": False}, format="json")
    assert response.status_code == 200
    entry = AuditEntry.objects.get(action="target.update")
    assert entry.changes == {"allowed": {"before": True, "after": False}}
