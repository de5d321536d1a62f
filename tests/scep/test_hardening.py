"""HTTP hardening: security headers, CSRF on session logins, login rate limiting, and
``manage.py check --deploy`` clean under production settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def password_user(django_user_model: Any, roles: None) -> Any:
    cache.clear()
    user = django_user_model.objects.create_superuser("sally", "s@example.com", "right-horse-9")
    yield user
    cache.clear()


@pytest.mark.django_db
def test_responses_carry_security_headers(viewer_client: Any) -> None:
    response = viewer_client.get("/api/v1/targets/")
    assert response.status_code == 200
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp


@pytest.mark.django_db
def test_admin_login_form_needs_the_csrf_token(password_user: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post("/admin/login/", {"username": "sally", "password": "right-horse-9"})
    assert response.status_code == 403  # no token: refused before any password check
    page = client.get("/admin/login/")
    token = page.cookies["csrftoken"].value
    response = client.post(
        "/admin/login/",
        {"username": "sally", "password": "right-horse-9", "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302


@pytest.mark.django_db
def test_repeated_failed_logins_lock_the_account_even_with_the_right_password(
    password_user: Any, settings: Any
) -> None:
    settings.SCEP_LOGIN_MAX_FAILURES = 3
    client = Client()
    for _ in range(3):
        response = client.post("/admin/login/", {"username": "sally", "password": "wrong"})
        assert response.status_code == 200  # the form again, with an error
        assert "_auth_user_id" not in client.session
    response = client.post("/admin/login/", {"username": "sally", "password": "right-horse-9"})
    assert "_auth_user_id" not in client.session, "locked out, the right password must not work"
    # Another address is not locked: the limit is per (username, address).
    other = Client(REMOTE_ADDR="10.9.8.7")
    response = other.post("/admin/login/", {"username": "sally", "password": "right-horse-9"})
    assert response.status_code == 302
    assert "_auth_user_id" in other.session


@pytest.mark.django_db
def test_a_successful_login_resets_the_failure_count(password_user: Any, settings: Any) -> None:
    settings.SCEP_LOGIN_MAX_FAILURES = 3
    client = Client()
    for _ in range(2):
        client.post("/admin/login/", {"username": "sally", "password": "wrong"})
    client.post("/admin/login/", {"username": "sally", "password": "right-horse-9"})
    assert "_auth_user_id" in client.session
    client.logout()
    for _ in range(2):
        client.post("/admin/login/", {"username": "sally", "password": "wrong"})
    client.post("/admin/login/", {"username": "sally", "password": "right-horse-9"})
    assert "_auth_user_id" in client.session


def _production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCEP_", "DJANGO_"))}
    env.update(
        DEBUG="false",
        SECRET_KEY="x7Gq-2vLr9pZ_kW4mT8cYb1sN6dF0hJ3uE5aR-oQiV7gXlK2zB9nM4wC8yP1tS6j",
        ALLOWED_HOSTS="scep.example.com",
        SCEP_HTTPS="true",
        SCEP_VAR_DIR=str(tmp_path),
    )
    env.update(extra)
    return env


def _check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_check_deploy_is_clean_under_production_settings(tmp_path: Path) -> None:
    result = _check_deploy(_production_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_flags_plain_http_settings(tmp_path: Path) -> None:
    # The test above could pass by accident if the check ran nothing: without HTTPS the
    # same command must complain about the redirect, the cookies and HSTS.
    result = _check_deploy(_production_env(tmp_path, SCEP_HTTPS="false"))
    assert result.returncode != 0
    for code in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert code in result.stderr + result.stdout, code
