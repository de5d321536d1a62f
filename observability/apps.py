"""The observability app: metrics, health endpoints and structured logs."""

from __future__ import annotations

import os
from typing import Any

from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "observability"
    verbose_name = "Platform telemetry"

    def ready(self) -> None:
        """Hook into Celery so ``scep worker`` and ``scep agent`` (both Celery workers) get
        a metrics server and JSON logs without any change to the CLI."""
        from celery.signals import after_setup_logger, after_setup_task_logger, worker_init

        from observability.events import _on_worker_init

        worker_init.connect(_on_worker_init, weak=False, dispatch_uid="scep-metrics-server")
        after_setup_logger.connect(_celery_json_logs, weak=False, dispatch_uid="scep-json-logs")
        after_setup_task_logger.connect(
            _celery_json_logs, weak=False, dispatch_uid="scep-json-task-logs"
        )


def _celery_json_logs(logger: Any = None, **_: Any) -> None:
    """Celery replaces the root logger's handlers with its own plain formatter when a
    worker starts; in JSON mode, put our formatter and run filter back on them."""
    if os.environ.get("SCEP_LOG_FORMAT", "plain").strip().lower() != "json" or logger is None:
        return
    from observability.logging import JsonFormatter, RunContextFilter

    for handler in logger.handlers:
        handler.setFormatter(JsonFormatter())
        if not any(isinstance(f, RunContextFilter) for f in handler.filters):
            handler.addFilter(RunContextFilter())
