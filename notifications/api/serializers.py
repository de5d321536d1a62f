"""Serializers of the notifications API. Secrets go in, never come out."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from rest_framework import serializers

from notifications.models import (
    ChannelKind,
    Event,
    NotificationChannel,
    NotificationDelivery,
)


class NotificationChannelSerializer(serializers.ModelSerializer):
    """``url`` and ``routing_key`` are write-only; reads show ``url_masked`` and
    ``has_routing_key``. On update, omit them to keep the stored values."""

    url = serializers.CharField(
        write_only=True,
        required=False,
        max_length=2000,
        help_text="secret; omit on update to keep it (optional for pagerduty)",
    )
    routing_key = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=200
    )
    url_masked = serializers.CharField(source="masked_url", read_only=True)
    has_routing_key = serializers.SerializerMethodField()
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=Event.subscribable()),
        allow_empty=True,
        default=Event.subscribable,
        help_text="events to send; all of them when omitted",
    )

    class Meta:
        model = NotificationChannel
        fields = [
            "id", "name", "kind", "url", "url_masked", "routing_key", "has_routing_key",
            "events", "enabled", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = ["created_at", "updated_at"]

    def get_has_routing_key(self, obj: NotificationChannel) -> bool:
        return bool(obj.routing_key)

    def validate_url(self, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            # Do not echo the value: it is a secret, and error bodies get logged.
            raise serializers.ValidationError("an absolute http(s) URL")
        return value.strip()

    def validate_events(self, value: list[str]) -> list[str]:
        return sorted(set(value), key=Event.subscribable().index)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        instance: NotificationChannel | None = self.instance
        kind = attrs.get("kind", instance.kind if instance else None)
        url = attrs.get("url", instance.url if instance else "")
        routing_key = attrs.get("routing_key", instance.routing_key if instance else "")
        if kind == ChannelKind.PAGERDUTY:
            if not routing_key:
                raise serializers.ValidationError(
                    {"routing_key": ["a PagerDuty channel needs a routing key"]}
                )
        elif not url:
            raise serializers.ValidationError({"url": ["this field is required"]})
        return attrs


class NotificationDeliverySerializer(serializers.ModelSerializer):
    channel_name = serializers.CharField(source="channel.name", read_only=True)

    class Meta:
        model = NotificationDelivery
        fields = [
            "id", "channel", "channel_name", "event", "run", "status", "attempts",
            "response_status", "last_error", "created_at", "sent_at",
        ]  # fmt: skip
        read_only_fields = fields
