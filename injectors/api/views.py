"""The failure-flags feed that applications poll through the ``scep_flags`` SDK.

It is read often (every application instance, every few seconds), so it is one indexed
query rendered from ``values()`` rows with no serializer round trip and no pagination:
an installation has a handful of active flags, never thousands.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from injectors.models import ActiveFault, FaultState
from scep.permissions import VIEWER

__all__ = ["ActiveFailureFlagsView", "active_flags"]

FLAG_INJECTOR = "code.flag"

_FLAG_FIELDS = {
    "fault": serializers.IntegerField(),
    "target": serializers.CharField(),
    "flag": serializers.CharField(),
    "labels": serializers.DictField(child=serializers.CharField()),
    "effect": serializers.ChoiceField(choices=["exception", "latency", "response"]),
    "params": serializers.JSONField(),
    "intensity": serializers.FloatField(),
    "expires_at": serializers.DateTimeField(),
    "expires_in_s": serializers.FloatField(),
}


def active_flags(*, target: str | None = None) -> list[dict[str, Any]]:
    """Every ACTIVE, unexpired ``code.flag`` ledger row, shaped for the SDK.

    ``expires_in_s`` is relative to the server's clock so that a client with a skewed
    clock still drops the flag on time (it counts down from when it fetched).
    """
    now = timezone.now()
    rows = ActiveFault.objects.filter(
        injector=FLAG_INJECTOR, state=FaultState.ACTIVE, expires_at__gt=now
    )
    if target:
        rows = rows.filter(target__name=target)
    out = []
    for row in rows.order_by("id").values(
        "id", "target__name", "params", "intensity", "expires_at"
    ):
        params = row["params"] or {}
        out.append(
            {
                "fault": row["id"],
                "target": row["target__name"],
                "flag": params.get("flag", ""),
                "labels": params.get("labels") or {},
                "effect": params.get("effect", ""),
                "params": params,
                "intensity": row["intensity"],
                "expires_at": row["expires_at"].isoformat().replace("+00:00", "Z"),
                "expires_in_s": round((row["expires_at"] - now).total_seconds(), 3),
            }
        )
    return out


class ActiveFailureFlagsView(APIView):
    """Active failure flags; any role may read them (applications use a viewer token)."""

    required_roles = {"GET": VIEWER}

    @extend_schema(
        summary="Active failure flags (code.flag faults) for the scep_flags SDK",
        parameters=[
            OpenApiParameter(
                "target", OpenApiTypes.STR, description="Only flags of this target (name)."
            )
        ],
        responses=inline_serializer(
            "ActiveFailureFlags",
            {
                "server_time": serializers.DateTimeField(),
                "flags": inline_serializer("FailureFlag", _FLAG_FIELDS, many=True),
            },
        ),
    )
    def get(self, request: Request) -> Response:
        flags = active_flags(target=request.query_params.get("target") or None)
        response = Response(
            {"server_time": timezone.now().isoformat().replace("+00:00", "Z"), "flags": flags}
        )
        # Clients cache by themselves (cache_ttl_s); an intermediary must not add to it,
        # or a reverted flag would outlive its revert.
        response["Cache-Control"] = "no-store"
        return response
