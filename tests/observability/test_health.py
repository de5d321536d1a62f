"""/healthz (no database) and /readyz (database, broker, agents)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from injectors.models import Agent


def test_healthz_answers_without_the_database() -> None:
    # No django_db mark: pytest-django raises on any database access here.
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.django_db
def test_readyz_ok_with_database_and_filesystem_broker(settings: Any, tmp_path: Path) -> None:
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.BROKER_DIR = tmp_path
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "broker", "agents"}
    for check in body["checks"].values():
        assert check["latency_ms"] >= 0
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["broker"]["status"] == "ok"
    # No agent online: reported, not failing.
    assert body["checks"]["agents"] == {
        "status": "warn",
        "online": 0,
        "required": False,
        "latency_ms": body["checks"]["agents"]["latency_ms"],
    }
    assert list(tmp_path.iterdir()) == []  # the probe file was removed


@pytest.mark.django_db
def test_readyz_503_when_the_broker_is_unreachable(settings: Any) -> None:
    # Port 1 on loopback refuses at once: one failed attempt, no retry loop.
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    settings.SCEP_READY_TIMEOUT_S = 1.0
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["checks"]["broker"]["status"] == "fail"
    assert body["checks"]["broker"]["latency_ms"] < 5000
    assert body["checks"]["database"]["status"] == "ok"


@pytest.mark.django_db
def test_readyz_503_when_the_broker_folder_is_missing(settings: Any, tmp_path: Path) -> None:
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.BROKER_DIR = tmp_path / "missing"
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["status"] == "fail"


@pytest.mark.django_db
def test_readyz_can_require_an_online_agent(settings: Any, tmp_path: Path) -> None:
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.BROKER_DIR = tmp_path
    settings.SCEP_READY_REQUIRES_AGENTS = True
    assert Client().get("/readyz").status_code == 503

    Agent.objects.create(name="local", last_heartbeat=timezone.now() - timedelta(seconds=1))
    response = Client().get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["agents"]["online"] == 1
