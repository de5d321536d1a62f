from django.apps import AppConfig


class WebConfig(AppConfig):
    """The server-rendered web UI (templates + htmx) mounted at the site root."""

    name = "web"
    verbose_name = "Web UI"
