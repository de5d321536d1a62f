"""Django admin for notification channels (secrets masked) and deliveries (read-only).

The URL and routing key inputs start empty and are never rendered with their stored
value: leaving them blank on edit keeps what is stored, so the admin page's HTML never
contains a secret.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from notifications.models import ChannelKind, Event, NotificationChannel, NotificationDelivery


class ChannelForm(forms.ModelForm):
    url = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"size": 80}),
        help_text="Secret. Leave blank to keep the stored URL.",
    )
    routing_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="PagerDuty only. Secret. Leave blank to keep the stored key.",
    )
    events = forms.MultipleChoiceField(
        choices=[(e, Event(e).label) for e in Event.subscribable()],
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )

    class Meta:
        model = NotificationChannel
        fields = ["name", "kind", "url", "routing_key", "events", "enabled"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        for field in ("url", "routing_key"):
            if not data.get(field) and self.instance.pk:
                data[field] = getattr(self.instance, field)
        if data.get("kind") != ChannelKind.PAGERDUTY and not data.get("url"):
            self.add_error("url", "This field is required.")
        if data.get("kind") == ChannelKind.PAGERDUTY and not data.get("routing_key"):
            self.add_error("routing_key", "A PagerDuty channel needs a routing key.")
        return data


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    list_display = ["name", "kind", "masked_url", "events", "enabled", "updated_at"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name"]
    readonly_fields = ["masked_url"]

    @admin.display(description="URL")
    def masked_url(self, obj: NotificationChannel) -> str:
        return obj.masked_url


@admin.register(NotificationDelivery)
class NotificationDeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "channel", "event", "run", "status", "attempts", "sent_at"]
    list_filter = ["status", "event", "channel"]
    readonly_fields = [f.name for f in NotificationDelivery._meta.fields]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
