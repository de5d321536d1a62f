"""API token authentication in one prepared-shape query.

Same contract as DRF's ``TokenAuthentication`` (header ``Authorization: Token <key>``,
the same 401 messages, ``request.auth`` the Token): only the lookup differs. DRF builds
the token-and-user query through the ORM on every request, and on the run list that
query's construction was the largest single cost left (about a fifth of the request's
CPU). A raw query returns the same User instance without it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.utils.dateparse import parse_datetime
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token


class TokenAuthentication(authentication.TokenAuthentication):
    def authenticate_credentials(self, key: str) -> tuple[Any, Token]:
        user_model = get_user_model()
        sql = (
            f"SELECT u.*, t.created AS scep_token_created FROM {user_model._meta.db_table} u "
            f"JOIN {Token._meta.db_table} t ON t.user_id = u.{user_model._meta.pk.column} "
            "WHERE t.key = %s"
        )
        found = list(user_model.objects.raw(sql, [key]))
        if not found:
            raise exceptions.AuthenticationFailed("Invalid token.")
        user = found[0]
        if not user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        token = Token(key=key, user=user, created=_aware(user.scep_token_created))
        return user, token


def _aware(value: Any) -> datetime | None:
    """A raw column's time as the ORM would give it (SQLite hands back naive UTC)."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value
