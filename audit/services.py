"""Recording audit entries; every mutating service calls ``record``."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, time
from typing import Any

from django.db import models

from audit.models import AuditEntry, AuditSource

__all__ = [
    "FILTER_PARAMS",
    "AuditFilterError",
    "export_csv",
    "export_rows",
    "filter_entries",
    "record",
]


def record(
    *,
    actor: Any,
    action: str,
    source: str,
    obj: models.Model | None = None,
    changes: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry. ``actor`` may be a user, None (the system) or a plain name."""
    user = actor if getattr(actor, "pk", None) is not None else None
    if user is not None:
        actor_name = user.get_username()
    elif isinstance(actor, str):
        actor_name = actor
    else:
        actor_name = ""
    return AuditEntry.objects.create(
        actor=user,
        actor_name=actor_name,
        action=action,
        object_type=obj._meta.label_lower if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        object_repr=str(obj)[:200] if obj is not None else "",
        changes=changes or {},
        source=AuditSource(source),
    )


#: Query parameters the audit list and export accept (all optional, combined with AND).
FILTER_PARAMS = ("actor", "action", "source", "object_type", "object_id", "since", "until")


class AuditFilterError(ValueError):
    """A filter value cannot be used; ``errors`` maps the parameter to the reason."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {v[0]}" for k, v in errors.items()))
        self.errors = errors


def filter_entries(queryset: Any, params: Any) -> Any:
    """Narrow ``queryset`` by the FILTER_PARAMS present in ``params`` (a QueryDict/dict).

    ``since``/``until`` are ISO 8601 dates or datetimes (``until`` inclusive; a date means
    that whole day, a naive time is UTC). Unknown sources and unparsable dates are
    refused rather than ignored, so a typo cannot silently return everything.
    """
    errors: dict[str, list[str]] = {}
    if actor := params.get("actor"):
        queryset = queryset.filter(actor_name=actor)
    for field in ("action", "object_type", "object_id"):
        if value := params.get(field):
            queryset = queryset.filter(**{field: value})
    if source := params.get("source"):
        if source not in AuditSource.values:
            errors["source"] = [f"one of: {', '.join(AuditSource.values)}"]
        else:
            queryset = queryset.filter(source=source)
    for param, lookup in (("since", "at__gte"), ("until", "at__lte")):
        if raw := params.get(param):
            moment = _parse_moment(raw, end_of_day=param == "until")
            if moment is None:
                errors[param] = ["expected an ISO 8601 date or datetime, e.g. 2026-01-31T12:00Z"]
            else:
                queryset = queryset.filter(**{lookup: moment})
    if errors:
        raise AuditFilterError(errors)
    return queryset


def _parse_moment(raw: str, *, end_of_day: bool) -> datetime | None:
    from django.utils.dateparse import parse_date, parse_datetime

    try:
        day = parse_date(raw)  # first: Python reads a bare date as a datetime at midnight
        if day is not None:
            moment = datetime.combine(day, time.max if end_of_day else time.min)
        else:
            moment = parse_datetime(raw)
            if moment is None:
                return None
    except (ValueError, OverflowError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


#: Columns of the CSV export, in order; ``changes`` is a JSON document in its cell.
EXPORT_COLUMNS = (
    "id",
    "at",
    "actor",
    "source",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "changes",
)


def export_rows(queryset: Any) -> Iterator[dict[str, Any]]:
    """Entries as flat dicts (oldest first), the shape both the CSV and JSON exports use."""
    for entry in queryset.order_by("at", "id").iterator(chunk_size=500):
        yield {
            "id": entry.pk,
            "at": entry.at.isoformat(),
            "actor": entry.actor_name,
            "source": entry.source,
            "action": entry.action,
            "object_type": entry.object_type,
            "object_id": entry.object_id,
            "object_repr": entry.object_repr,
            "changes": entry.changes,
        }


def export_csv(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """CSV text, one chunk per line, header first; cells that a spreadsheet would run as a
    formula (leading = + - @) are prefixed with a quote."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(values: list[Any]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(values)
        return buffer.getvalue()

    yield line(list(EXPORT_COLUMNS))
    for row in rows:
        cells = []
        for column in EXPORT_COLUMNS:
            value = row[column]
            text = json.dumps(value, sort_keys=True) if column == "changes" else str(value)
            if text[:1] in ("=", "+", "-", "@"):
                text = "'" + text
            cells.append(text)
        yield line(cells)
