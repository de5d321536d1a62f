"""Every mutating API call leaves an audit entry naming the actor, with source "api"."""

from __future__ import annotations

from typing import Any

import pytest

from audit.models import AppendOnlyError, AuditEntry

pytestmark = pytest.mark.django_db


def test_every_mutation_is_audited(
    operator_client: Any, admin_client: Any, operator: Any, admin_user: Any, make_spec: Any
) -> None:
    calls: list[tuple[Any, str, str, dict | None, str]] = []

    def call(client: Any, method: str, url: str, body: dict | None, action: str) -> Any:
        response = getattr(client, method)(url, body, format="json")
        assert response.status_code < 300, (url, response.content)
        calls.append((client, method, url, body, action))
        return response

    target = call(
        admin_client,
        "post",
        "/api/v1/targets/",
        {
            "name": "demo",
            "config": {
                "proxies": {
                    "downstream": {"listen": "127.0.0.1:19101", "upstream": "127.0.0.1:19100"}
                }
            },
        },
        "target.create",
    ).json()
    call(
        admin_client,
        "patch",
        f"/api/v1/targets/{target['id']}/",
        {"description": "d"},
        "target.update",
    )
    experiment = call(
        operator_client, "post", "/api/v1/experiments/", {"spec": make_spec()}, "experiment.create"
    ).json()
    call(
        operator_client,
        "put",
        f"/api/v1/experiments/{experiment['id']}/",
        {"spec": make_spec(duration=30)},
        "experiment.update",
    )
    run = call(
        operator_client, "post", f"/api/v1/experiments/{experiment['id']}/start/", {}, "run.start"
    ).json()
    call(operator_client, "post", f"/api/v1/runs/{run['id']}/abort/", {}, "run.abort")
    call(
        operator_client,
        "post",
        "/api/v1/kill-switch/engage/",
        {"reason": "r"},
        "kill_switch.engage",
    )
    call(admin_client, "post", "/api/v1/kill-switch/release/", {}, "kill_switch.release")
    spare = call(
        operator_client,
        "post",
        "/api/v1/experiments/",
        {"spec": make_spec(name="spare")},
        "experiment.create",
    ).json()
    call(
        operator_client, "delete", f"/api/v1/experiments/{spare['id']}/", None, "experiment.delete"
    )
    other = call(
        admin_client, "post", "/api/v1/targets/", {"name": "other"}, "target.create"
    ).json()
    call(admin_client, "delete", f"/api/v1/targets/{other['id']}/", None, "target.delete")

    entries = list(AuditEntry.objects.order_by("id"))
    assert [e.action for e in entries] == [action for *_, action in calls]
    for entry, (client, *_rest) in zip(entries, calls, strict=True):
        expected = admin_user if client is admin_client else operator
        assert entry.source == "api"
        assert entry.actor_id == expected.pk
        assert entry.actor_name == expected.username


def test_read_calls_are_not_audited(viewer_client: Any, experiment: Any) -> None:
    before = AuditEntry.objects.count()
    viewer_client.get("/api/v1/experiments/")
    viewer_client.get(f"/api/v1/experiments/{experiment.pk}/")
    assert AuditEntry.objects.count() == before


def test_failed_mutations_leave_no_entry(operator_client: Any, experiment: Any) -> None:
    from experiments.services.runs import start_run

    start_run(experiment, actor=None, source="system")
    before = AuditEntry.objects.count()
    # Refused with 409: the service's entry is rolled back with the delete.
    assert operator_client.delete(f"/api/v1/experiments/{experiment.pk}/").status_code == 409
    assert AuditEntry.objects.count() == before


def test_entries_cannot_be_changed_or_deleted(admin_client: Any, experiment: Any) -> None:
    entry = AuditEntry.objects.get(action="experiment.create")
    entry.action = "something.else"
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    # Nor over the API: it is read-only.
    url = f"/api/v1/audit/{entry.pk}/"
    assert admin_client.delete(url).status_code == 405
    assert admin_client.patch(url, {"action": "x"}, format="json").status_code == 405
    assert AuditEntry.objects.get(pk=entry.pk).action == "experiment.create"


def test_audit_filters(admin_client: Any, experiment: Any) -> None:
    response = admin_client.get("/api/v1/audit/?action=experiment.create&source=system")
    assert response.status_code == 200
    assert [e["action"] for e in response.json()["results"]] == ["experiment.create"]
    assert admin_client.get("/api/v1/audit/?source=api").json()["count"] == 0
    assert admin_client.get("/api/v1/audit/?object_type=experiments.experiment").json()["count"]
    assert admin_client.get("/api/v1/audit/?source=bogus").status_code == 400


def test_admin_target_changes_are_audited_with_source_admin(
    client: Any, django_user_model: Any
) -> None:
    """The Django admin goes through the same services; only the source differs."""
    from experiments.models import Target

    boss = django_user_model.objects.create_superuser("boss", "boss@example.com", None)
    client.force_login(boss)
    from governance.models import default_team_id

    form = {
        "name": "via-admin",
        "team": str(default_team_id()),  # the admin form asks for the owning team
        "environment": "development",
        "agent": "local",
        "config": "{}",
        "labels": "{}",
        "allowed": "on",
    }
    assert client.post("/admin/experiments/target/add/", form).status_code == 302
    target = Target.objects.get(name="via-admin")
    change = {**form, "description": "edited"}
    assert client.post(f"/admin/experiments/target/{target.pk}/change/", change).status_code == 302
    assert (
        client.post(f"/admin/experiments/target/{target.pk}/delete/", {"post": "yes"}).status_code
        == 302
    )
    entries = AuditEntry.objects.filter(object_type="experiments.target").order_by("id")
    assert [(e.action, e.source, e.actor_name) for e in entries] == [
        ("target.create", "admin", "boss"),
        ("target.update", "admin", "boss"),
        ("target.delete", "admin", "boss"),
    ]
    assert entries[1].changes == {"description": {"before": "", "after": "edited"}}


@pytest.mark.parametrize(
    "url",
    [
        "/admin/experiments/target/",
        "/admin/experiments/experiment/",
        "/admin/experiments/experimentversion/",
        "/admin/experiments/run/",
        "/admin/experiments/runevent/",
        "/admin/experiments/killswitch/",
        "/admin/injectors/activefault/?expiry=overdue",
        "/admin/injectors/agent/?online=no",
        "/admin/analysis/metricseries/",
        "/admin/analysis/finding/",
        "/admin/audit/auditentry/",
    ],
)
def test_admin_pages_render(client: Any, django_user_model: Any, experiment: Any, url: str) -> None:
    from experiments.services.runs import start_run

    run = start_run(experiment, actor=None, source="system")
    boss = django_user_model.objects.create_superuser("boss", "boss@example.com", None)
    client.force_login(boss)
    assert client.get(url).status_code == 200
    assert client.get(f"/admin/experiments/run/{run.pk}/change/").status_code == 200
    assert client.get(f"/admin/experiments/experiment/{experiment.pk}/change/").status_code == 200


def test_admin_experiment_edit_makes_a_version(
    client: Any, django_user_model: Any, experiment: Any, make_spec: Any
) -> None:
    import json

    boss = django_user_model.objects.create_superuser("boss", "boss@example.com", None)
    client.force_login(boss)
    url = f"/admin/experiments/experiment/{experiment.pk}/change/"
    prefix = "versions"
    form = {
        "spec": json.dumps(make_spec(duration=40)),
        f"{prefix}-TOTAL_FORMS": "1",
        f"{prefix}-INITIAL_FORMS": "1",
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "0",
    }
    response = client.post(url, form)
    assert response.status_code == 302, response.content[:2000]
    experiment.refresh_from_db()
    assert experiment.version == 2
    assert AuditEntry.objects.filter(action="experiment.update", source="admin").exists()
    bad = client.post(url, {**form, "spec": json.dumps(make_spec(duration="soon"))})
    assert bad.status_code == 200
    assert b"expected a duration" in bad.content
