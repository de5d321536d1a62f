"""The audit trail: filters, CSV/JSON export, and append-only enforced by PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError
from django.utils import timezone

from audit.models import AppendOnlyError, AuditEntry
from audit.services import record

pytestmark = pytest.mark.django_db


@pytest.fixture
def trail(admin_user: Any, operator: Any, target: Any) -> list[AuditEntry]:
    return [
        record(actor=admin_user, action="target.update", source="admin", obj=target,
               changes={"description": {"before": "", "after": "=HYPERLINK(1)"}}),
        record(actor=operator, action="run.start", source="api", obj=target),
        record(actor="beat", action="campaign.tick", source="scheduler"),
        record(actor=operator, action="run.abort", source="cli", obj=target),
    ]  # fmt: skip


def _actions(response: Any) -> list[str]:
    assert response.status_code == 200, response.content[:300]
    body = response.json()
    rows = body["results"] if isinstance(body, dict) else body
    return [row["action"] for row in rows]


def test_list_filters_by_actor_action_source_and_object(
    admin_client: Any, trail: list[AuditEntry], target: Any
) -> None:
    assert _actions(admin_client.get("/api/v1/audit/?actor=otto-operator")) == [
        "run.abort",
        "run.start",
    ]
    assert _actions(admin_client.get("/api/v1/audit/?source=scheduler")) == ["campaign.tick"]
    assert _actions(admin_client.get("/api/v1/audit/?action=run.start")) == ["run.start"]
    by_object = admin_client.get(
        f"/api/v1/audit/?object_type=experiments.target&object_id={target.pk}&actor=ada-admin"
    )
    assert _actions(by_object) == ["target.update"]


def test_list_filters_by_date_range(admin_client: Any, trail: list[AuditEntry]) -> None:
    record(actor=None, action="old.thing", source="system")
    today = timezone.now().date()
    yesterday = today - timedelta(days=1)
    assert len(_actions(admin_client.get(f"/api/v1/audit/?since={today}"))) == 5
    assert _actions(admin_client.get(f"/api/v1/audit/?until={yesterday}")) == []
    assert len(_actions(admin_client.get(f"/api/v1/audit/?until={today}"))) == 5
    later = (timezone.now() + timedelta(hours=1)).isoformat()
    assert _actions(admin_client.get("/api/v1/audit/", {"since": later})) == []


@pytest.mark.parametrize(
    ("param", "value"),
    [("since", "yesterday"), ("until", "2026-13-45"), ("source", "telepathy")],
)
def test_bad_filters_are_400_naming_the_parameter(
    admin_client: Any, trail: list[AuditEntry], param: str, value: str
) -> None:
    for url in ("/api/v1/audit/", "/api/v1/audit/export/"):
        response = admin_client.get(url, {param: value})
        assert response.status_code == 400, response.content
        assert param in response.json()["errors"]


def test_export_json_is_every_matching_entry_oldest_first(
    admin_client: Any, trail: list[AuditEntry]
) -> None:
    response = admin_client.get("/api/v1/audit/export/?format=json&actor=otto-operator")
    assert response.status_code == 200
    rows = response.json()
    assert [r["action"] for r in rows] == ["run.start", "run.abort"]
    assert {r["source"] for r in rows} == {"api", "cli"}


def test_export_csv_has_a_header_and_defuses_formulas(
    admin_client: Any, trail: list[AuditEntry]
) -> None:
    response = admin_client.get("/api/v1/audit/export/?format=csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    text = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["action"] for r in rows] == [e.action for e in trail]
    assert rows[0]["actor"] == "ada-admin" and rows[0]["source"] == "admin"
    changes = json.loads(rows[0]["changes"])
    assert changes["description"]["after"] == "=HYPERLINK(1)"  # inside JSON: harmless
    assert rows[2]["actor"] == "beat"


def test_export_is_for_admins_only(operator_client: Any, trail: list[AuditEntry]) -> None:
    assert operator_client.get("/api/v1/audit/export/?format=csv").status_code == 403


def test_python_guard_refuses_changes(trail: list[AuditEntry]) -> None:
    entry = trail[0]
    entry.action = "forged"
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()


postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the trigger exists on PostgreSQL only"
)


@postgres_only
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditentry SET action = 'forged' WHERE id = %s",
        "DELETE FROM audit_auditentry WHERE id = %s",
        "TRUNCATE audit_auditentry",
    ],
)
def test_postgresql_refuses_raw_update_delete_and_truncate(
    trail: list[AuditEntry], statement: str
) -> None:
    entry = trail[0]
    with connection.cursor() as cursor:
        # The test session may TRUNCATE (tests/conftest.py); an application session may not.
        cursor.execute("SET scep.audit_truncate_ok = 'off'")
        # Fire the deferred FK checks of the rows just written, or PostgreSQL refuses
        # TRUNCATE for "pending trigger events" before our trigger is even asked.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        try:
            with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
                cursor.execute(statement, [entry.pk] if "%s" in statement else None)
        finally:
            cursor.execute("SET scep.audit_truncate_ok = 'on'")
    assert AuditEntry.objects.get(pk=entry.pk).action == entry.action
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).update(action="bulk-forged")


@postgres_only
def test_deleting_a_user_keeps_their_entries_by_name(
    django_user_model: Any, trail: list[AuditEntry]
) -> None:
    user = django_user_model.objects.create_user("leaver")
    entry = record(actor=user, action="target.update", source="api")
    user.delete()  # ON DELETE SET NULL: the one UPDATE the trigger allows
    entry = AuditEntry.objects.get(pk=entry.pk)
    assert entry.actor_id is None
    assert entry.actor_name == "leaver"


def test_cli_actions_are_audited_with_source_cli(experiment: Any) -> None:
    from scep.cli.main import main

    assert main(["kill-switch", "on", "--reason", "drill"]) == 0
    assert main(["kill-switch", "off"]) == 0
    entries = AuditEntry.objects.filter(action__startswith="kill_switch").order_by("id")
    assert [(e.action, e.source) for e in entries] == [
        ("kill_switch.engage", "cli"),
        ("kill_switch.release", "cli"),
    ]
    assert entries[0].actor_name.startswith("cli")
    assert entries[0].changes == {"reason": "drill"}


def test_admin_policy_changes_are_audited_with_source_admin(
    client: Any, django_user_model: Any
) -> None:
    boss = django_user_model.objects.create_superuser("boss", "boss@example.com", None)
    client.force_login(boss)
    form = {
        "name": "prod",
        "environment": "production",
        "enabled": "on",
        "allowed_families": '["network"]',
        "time_windows": "[]",
        "timezone": "UTC",
        "blackouts": "[]",
    }
    response = client.post("/admin/governance/policy/add/", form)
    assert response.status_code == 302, response.content[:500]
    bad = client.post("/admin/governance/policy/add/", {**form, "name": "x", "timezone": "Nope"})
    assert bad.status_code == 200 and b"unknown time zone" in bad.content
    entry = AuditEntry.objects.get(action="policy.create")
    assert (entry.source, entry.actor_name) == ("admin", "boss")
    assert entry.changes["allowed_families"] == {"before": None, "after": ["network"]}


def test_faults_applied_and_reverted_are_audited_with_their_source(target: Any) -> None:
    from injectors import execution
    from injectors.models import ActiveFault

    fault = ActiveFault.objects.create(
        target=target,
        injector="control.placebo",
        params={},
        agent="edge-1",
        expires_at=timezone.now() + timedelta(minutes=5),
    )
    execution.apply_fault(fault.pk, where="agent edge-1")
    execution.revert_fault(fault.pk, reason="done")  # from the control plane
    entries = AuditEntry.objects.filter(object_type="injectors.activefault").order_by("id")
    assert [(e.action, e.source, e.actor_name) for e in entries] == [
        ("fault.apply", "agent", "agent:edge-1"),
        ("fault.revert", "system", "control-plane"),
    ]
    assert entries[0].changes["state"] == {"before": "pending", "after": "active"}
    assert entries[1].changes["reason"] == "done"


def test_a_nul_character_in_a_filter_is_a_400_not_a_500(
    admin_client: Any, trail: list[AuditEntry]
) -> None:
    # PostgreSQL refuses NUL in text (DataError); SQLite simply finds nothing.
    response = admin_client.get("/api/v1/audit/", {"actor": "a\x00b"})
    if connection.vendor == "postgresql":
        assert response.status_code == 400, response.content
        assert "NUL" in response.json()["detail"]
    else:
        assert response.status_code == 200
        assert response.json()["results"] == []
