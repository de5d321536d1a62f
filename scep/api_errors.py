"""The API's exception handler: one error shape for bad input, 409 for refused states.

Clients (the CLI, the web UI, scripts) print ``detail`` as a one-line summary and use
``errors`` (field path → reasons) to point at what to fix, whether the problem was found
by a DRF serializer or by the spec validator. Domain refusals (kill switch engaged, run
already over, object still referenced) are conflicts with the current state, not bad
input, hence 409. Anything not recognised here falls through to DRF's default handler.
"""

from __future__ import annotations

from typing import Any

from django.db import DataError, IntegrityError
from django.db.models import ProtectedError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from experiments.services.runs import KillSwitchEngaged, RunNotAbortable, RunNotAwaitingApproval
from experiments.spec import SpecError

__all__ = [
    "error_response",
    "exception_handler",
    "flatten_errors",
    "not_found",
    "server_error",
]


def error_response(
    detail: str, errors: dict[str, list[str]] | None = None, *, status_code: int = 400
) -> Response:
    body: dict[str, Any] = {"detail": detail}
    if errors is not None:
        body["errors"] = errors
    return Response(body, status=status_code)


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn DRF's nested error structure into ``{"a.b[0].c": ["reason", ...]}``."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = "" if key == "non_field_errors" else str(key)
            path = f"{prefix}.{name}" if prefix and name else (prefix or name)
            for sub, reasons in flatten_errors(value, path).items():
                out.setdefault(sub, []).extend(reasons)
    elif isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            out.setdefault(prefix or "body", []).extend(str(item) for item in detail)
        else:
            for index, item in enumerate(detail):
                for sub, reasons in flatten_errors(item, f"{prefix}[{index}]").items():
                    out.setdefault(sub, []).extend(reasons)
    else:
        out.setdefault(prefix or "body", []).append(str(detail))
    return out


def _summary(errors: dict[str, list[str]]) -> str:
    if not errors:
        return "Invalid input."
    path, reasons = next(iter(errors.items()))
    first = f"{path}: {reasons[0]}" if path not in ("", "spec", "body") else reasons[0]
    more = sum(len(r) for r in errors.values()) - 1
    return f"{first} (and {more} more)" if more else first


def _protected_detail(exc: ProtectedError) -> str:
    blockers = list(exc.protected_objects)
    kinds = sorted({str(obj._meta.verbose_name_plural) for obj in blockers})
    return (
        f"cannot delete: {len(blockers)} {' and '.join(kinds) or 'objects'} still refer to it; "
        "delete or keep those first"
    )


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, SpecError):
        errors = exc.as_dict()
        return error_response(_summary(errors), errors)
    if isinstance(exc, ValidationError):
        errors = flatten_errors(exc.detail)
        return error_response(_summary(errors), errors)
    if isinstance(exc, KillSwitchEngaged | RunNotAbortable | RunNotAwaitingApproval):
        return error_response(str(exc), status_code=status.HTTP_409_CONFLICT)
    if isinstance(exc, ProtectedError):
        return error_response(_protected_detail(exc), status_code=status.HTTP_409_CONFLICT)
    if isinstance(exc, DataError):
        # The database refused a value outright (found by schemathesis on PostgreSQL: a NUL
        # character in a query parameter). Bad input, not a server fault.
        return error_response(
            "a value in the request cannot be used (e.g. it contains a NUL character)"
        )
    if isinstance(exc, IntegrityError):
        # Serializers check uniqueness first; this only catches a concurrent duplicate.
        return error_response(
            "conflicts with an existing object (a name is probably taken)",
            status_code=status.HTTP_409_CONFLICT,
        )
    return drf_exception_handler(exc, context)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404 for URLs nothing matched: JSON under ``/api/`` (clients parse the body and the
    schema documents JSON), Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """500 in the same JSON shape under ``/api/``; the error itself is logged by Django."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Internal server error."}, status=500)
    return defaults.server_error(request)
