"""API tokens: one query finds the token's user, with DRF's contract kept (401 and the
same messages for unknown tokens and inactive users, ``request.auth`` the Token)."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient, APIRequestFactory

from scep.authentication import TokenAuthentication

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
