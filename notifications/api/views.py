"""Notification channels (admins configure, operators look) and their delivery log."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from audit.models import AuditSource
from audit.services import record
from experiments.services import access
from notifications.api.serializers import (
    NotificationChannelSerializer,
    NotificationDeliverySerializer,
)
from notifications.models import DeliveryStatus, Event, NotificationChannel, NotificationDelivery
from notifications.services import send_test
from scep.api_params import parse_id
from scep.permissions import ADMIN, OPERATOR, VIEWER

SOURCE = AuditSource.API
_SECRET_FIELDS = ("url", "routing_key")


def _audit_changes(data: dict[str, Any]) -> dict[str, Any]:
    """What changed, with secrets reduced to the fact that they changed."""
    return {k: ("(changed)" if k in _SECRET_FIELDS else v) for k, v in data.items()}


@extend_schema_view(
    create=extend_schema(summary="Add a notification channel (admin)"),
    test=extend_schema(
        summary="Send a test event to the channel now (one attempt)",
        request=None,
        responses=NotificationDeliverySerializer,
    ),
)
class NotificationChannelViewSet(viewsets.ModelViewSet):
    """Where run outcomes are sent. URLs and routing keys are secrets: write-only."""

    queryset = NotificationChannel.objects.all()
    serializer_class = NotificationChannelSerializer
    required_roles = {
        "list": OPERATOR,
        "retrieve": OPERATOR,
        "create": ADMIN,
        "update": ADMIN,
        "partial_update": ADMIN,
        "destroy": ADMIN,
        "test": ADMIN,
    }

    def perform_create(self, serializer: NotificationChannelSerializer) -> None:
        channel = serializer.save()
        record(
            actor=self.request.user,
            action="notification_channel.create",
            source=SOURCE,
            obj=channel,
            changes=_audit_changes(serializer.validated_data),
        )

    def perform_update(self, serializer: NotificationChannelSerializer) -> None:
        channel = serializer.save()
        record(
            actor=self.request.user,
            action="notification_channel.update",
            source=SOURCE,
            obj=channel,
            changes=_audit_changes(serializer.validated_data),
        )

    def perform_destroy(self, instance: NotificationChannel) -> None:
        record(
            actor=self.request.user,
            action="notification_channel.delete",
            source=SOURCE,
            obj=instance,
        )
        instance.delete()

    @action(detail=True, methods=["post"])
    def test(self, request: Request, pk: str | None = None) -> Response:
        """Answers 200 with the delivery either way: a failing receiver is a result to
        show (status ``failed``, redacted ``last_error``), not an error of this API."""
        channel = self.get_object()
        delivery = send_test(channel)
        record(
            actor=request.user,
            action="notification_channel.test",
            source=SOURCE,
            obj=channel,
            changes={"delivery": delivery.pk, "status": delivery.status},
        )
        return Response(NotificationDeliverySerializer(delivery).data)


@extend_schema_view(
    list=extend_schema(
        summary="Notification deliveries, newest first",
        parameters=[
            OpenApiParameter("channel", int),
            OpenApiParameter("run", int),
            OpenApiParameter("status", str, enum=list(DeliveryStatus.values)),
            OpenApiParameter("event", str, enum=list(Event.values)),
        ],
    )
)
class NotificationDeliveryViewSet(viewsets.ReadOnlyModelViewSet):
    """What was sent where, how many attempts it took, and the (redacted) last error."""

    queryset = NotificationDelivery.objects.select_related("channel")
    serializer_class = NotificationDeliverySerializer
    required_roles = {"list": OPERATOR, "retrieve": OPERATOR}

    def get_queryset(self) -> QuerySet:
        # Deliveries of runs in other teams are not shown (test sends have no run).
        queryset = super().get_queryset()
        teams = access.teams_with_role(self.request.user, VIEWER)
        if teams is not None:
            queryset = queryset.filter(Q(run__isnull=True) | Q(run__experiment__team__in=teams))
        if self.action != "list":
            return queryset
        params = self.request.query_params
        for param in ("channel", "run"):
            if value := params.get(param):
                number = parse_id(value)
                if number is None:
                    raise serializers.ValidationError({param: ["must be an id"]})
                queryset = queryset.filter(**{f"{param}_id": number})
        for param, choices in (("status", DeliveryStatus.values), ("event", Event.values)):
            if value := params.get(param):
                if value not in choices:
                    raise serializers.ValidationError({param: [f"one of: {', '.join(choices)}"]})
                queryset = queryset.filter(**{param: value})
        return queryset
