"""HTTP hardening that Django does not ship: a Content-Security-Policy header and login
rate limiting.

Login throttling is done here rather than with django-axes because what we need is
small: count failed logins per (username, client address) in the Django cache and refuse
further attempts for a while once the count passes a limit. Doing it in the
authentication backend (Django's model backend with a check in front) covers every door
that calls ``django.contrib.auth.authenticate`` — the admin login, the web UI's login
form, HTTP basic auth — without wiring each one,
and needs no extra tables or migrations. In production set ``SCEP_CACHE_URL`` to Redis
so that all web processes share the counters.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse

__all__ = [
    "ContentSecurityPolicyMiddleware",
    "LoginRateLimitBackend",
    "client_address",
    "login_is_locked",
]

log = logging.getLogger(__name__)


class ContentSecurityPolicyMiddleware:
    """Adds ``Content-Security-Policy`` (``SCEP_CSP``) to responses that lack one."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        policy = settings.SCEP_CSP
        if policy and "Content-Security-Policy" not in response.headers:
            response.headers["Content-Security-Policy"] = policy
        return response


def client_address(request: HttpRequest | None) -> str:
    """The caller's address; behind a proxy, ``SCEP_TRUST_X_FORWARDED_FOR`` picks the
    first hop of ``X-Forwarded-For`` (only then: the header is trivially forged)."""
    if request is None:
        return "-"
    meta = getattr(request, "META", {})
    if settings.SCEP_TRUST_X_FORWARDED_FOR and meta.get("HTTP_X_FORWARDED_FOR"):
        return meta["HTTP_X_FORWARDED_FOR"].split(",")[0].strip()
    return meta.get("REMOTE_ADDR", "-")


def _key(username: str, address: str) -> str:
    digest = hashlib.sha256(f"{username.lower()}|{address}".encode()).hexdigest()[:32]
    return f"scep:login-failures:{digest}"


def login_is_locked(username: str, address: str) -> bool:
    """True while this username from this address has used up its failed attempts."""
    return cache.get(_key(username, address), 0) >= settings.SCEP_LOGIN_MAX_FAILURES


class LoginRateLimitBackend(ModelBackend):
    """Django's model backend, refusing while the (username, address) pair is locked out.

    Raising PermissionDenied stops ``authenticate`` at once, so a locked-out caller cannot
    keep guessing even with the right password. It *is* the model backend (rather than a
    guard placed before it) so that ``login()``/``force_login()``, which remember the
    first configured backend, still load the user from the session.
    """

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if username and login_is_locked(username, client_address(request)):
            log.warning("login refused: %r is locked out after repeated failures", username)
            raise PermissionDenied("too many failed logins; try again later")
        return super().authenticate(request, username=username, password=password, **kwargs)


@receiver(user_login_failed)
def _count_failure(sender: Any, credentials: dict[str, Any], request: Any = None, **kw: Any):
    username = str(credentials.get("username") or "")
    if not username:
        return
    key = _key(username, client_address(request))
    window = int(settings.SCEP_LOGIN_LOCKOUT_S)
    if cache.add(key, 1, timeout=window):
        return
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=window)


@receiver(user_logged_in)
def _reset_failures(sender: Any, request: Any, user: Any, **kw: Any) -> None:
    cache.delete(_key(user.get_username(), client_address(request)))
