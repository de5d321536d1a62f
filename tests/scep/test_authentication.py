"""API tokens: one query finds the token's user, with DRF's contract kept (401 and the
same messages for unknown tokens and inactive users, ``request.auth`` the Token)."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient, APIRequestFactory

from scep.authentication import TokenAuthentication
from tests.experiments.api.test_run_list import counted_queries

pytestmark = pytest.mark.django_db


def _client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_a_known_token_authenticates_its_user(viewer: Any) -> None:
    token = Token.objects.create(user=viewer)
    request = APIRequestFactory().get("/", HTTP_AUTHORIZATION=f"Token {token.key}")
    user, auth = TokenAuthentication().authenticate(request)
    assert user.pk == viewer.pk and user.username == viewer.username
    assert isinstance(auth, Token) and auth.key == token.key and auth.user_id == viewer.pk
    assert auth.created == token.created
    assert _client(token.key).get("/api/v1/runs/").status_code == 200


def test_an_unknown_token_is_401_with_the_reason() -> None:
    response = _client("0" * 40).get("/api/v1/runs/")
    assert response.status_code == 401
    assert "Invalid token" in response.json()["detail"]
    assert response["WWW-Authenticate"] == "Token"


def test_an_inactive_users_token_is_refused(viewer: Any) -> None:
    token = Token.objects.create(user=viewer)
    viewer.is_active = False
    viewer.save(update_fields=["is_active"])
    response = _client(token.key).get("/api/v1/runs/")
    assert response.status_code == 401
    assert "inactive" in response.json()["detail"]


def test_a_deleted_token_stops_working_at_once(viewer: Any) -> None:
    token = Token.objects.create(user=viewer)
    client = _client(token.key)
    assert client.get("/api/v1/runs/").status_code == 200
    token.delete()
    assert client.get("/api/v1/runs/").status_code == 401


# --- the per-process cache of callers ---------------------------------------------------


@pytest.fixture
def caching(transactional_db: Any) -> None:
    """Callers are cached only outside transactions, as the web server runs requests.
    The default team exists, as it does after a database's first request (creating it
    is itself a change to who may do what)."""
    from governance.models import default_team_id

    default_team_id()


def _statements(client: APIClient, path: str = "/api/v1/kill-switch/") -> tuple[int, list[str]]:
    with counted_queries() as seen:
        response = client.get(path)
    return response.status_code, seen


def test_a_known_caller_costs_no_token_user_or_role_query(caching: None, viewer: Any) -> None:
    client = _client(Token.objects.create(user=viewer).key)
    status, first = _statements(client)
    assert status == 200 and any("authtoken_token" in sql for sql in first)
    status, again = _statements(client)
    assert status == 200
    looked_up = [sql for sql in again if any(t in sql for t in ("authtoken", "auth_group", "team"))]
    assert looked_up == []


def test_revoking_deactivating_or_demoting_takes_effect_on_the_next_request(
    caching: None, viewer: Any, operator: Any, django_user_model: Any
) -> None:
    revoked = Token.objects.create(user=viewer)
    client = _client(revoked.key)
    assert client.get("/api/v1/runs/").status_code == 200
    revoked.delete()
    assert client.get("/api/v1/runs/").status_code == 401

    client = _client(Token.objects.create(user=operator).key)
    assert client.get("/api/v1/runs/").status_code == 200
    operator.groups.clear()  # no role left
    assert client.get("/api/v1/runs/").status_code == 403

    django_user_model.objects.filter(pk=operator.pk).update(is_active=False)
    assert client.get("/api/v1/runs/").status_code == 401


def test_a_cached_caller_is_a_copy_per_request(caching: None, viewer: Any) -> None:
    token = Token.objects.create(user=viewer)
    request = APIRequestFactory().get("/", HTTP_AUTHORIZATION=f"Token {token.key}")
    first, _ = TokenAuthentication().authenticate(request)
    request = APIRequestFactory().get("/", HTTP_AUTHORIZATION=f"Token {token.key}")
    second, _ = TokenAuthentication().authenticate(request)
    assert first is not second and first.pk == second.pk
    first.username = "changed by one request"
    assert second.username == viewer.username


def test_with_the_caller_cache_off_every_request_looks_the_caller_up(
    caching: None, viewer: Any, settings: Any
) -> None:
    settings.SCEP_API_CALLER_CACHE = False
    client = _client(Token.objects.create(user=viewer).key)
    for _ in range(2):
        status, seen = _statements(client)
        assert status == 200 and any("authtoken_token" in sql for sql in seen)
