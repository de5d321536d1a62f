"""Structured logs: one JSON object per line, tagged with the run being orchestrated.

Why: a worker interleaves the logs of several runs (threads pool) and agents log on
behalf of runs too; log shippers (Loki, Elasticsearch, CloudWatch) can only filter and
join by run when the id is a field, not a substring of a message.

``run_context(run_id)`` sets a context variable for the duration of a block;
``RunContextFilter`` copies it onto every record as ``record.run_id`` (so plain formats
may use it too) and ``JsonFormatter`` writes it when set. Context variables do not
follow work handed to *new* threads; code that starts threads for a run should wrap
their target in ``run_context`` as well.

This module must not import Django models: ``LOGGING`` loads it while settings are
being configured.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

__all__ = ["JsonFormatter", "RunContextFilter", "current_run_id", "run_context"]

_run_id: contextvars.ContextVar[int | str | None] = contextvars.ContextVar(
    "scep_run_id", default=None
)

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is kept.
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "run_id",
    "taskName",
}


def current_run_id() -> int | str | None:
    """The run id of the enclosing ``run_context`` block, if any."""
    return _run_id.get()


@contextmanager
def run_context(run_id: int | str | None) -> Iterator[None]:
    """Tag every log record emitted inside the block (same thread/task) with ``run_id``."""
    token = _run_id.set(run_id)
    try:
        yield
    finally:
        _run_id.reset(token)


class RunContextFilter(logging.Filter):
    """Adds ``record.run_id`` (None outside a run) and never drops a record.

    Attach it to *handlers*: logger-level filters are not consulted for records that
    propagate from child loggers.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "run_id", None) is None:
            record.run_id = _run_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC ISO 8601), level, logger, message, run_id,
    then exception text and any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        # The filter normally sets it; the context variable covers handlers without it.
        run_id = getattr(record, "run_id", None)
        if run_id is None:
            run_id = _run_id.get()
        if run_id is not None:
            payload["run_id"] = run_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_") and key not in payload:
                payload[key] = value
        if record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            payload["stack_info"] = self.formatStack(record.stack_info)
        # default=str: a log line must never fail because of an odd ``extra`` value.
        return json.dumps(payload, default=str, ensure_ascii=False)
