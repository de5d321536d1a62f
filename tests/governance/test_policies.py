"""Safety policies enforced by preflight (with known clocks), and production approvals."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from audit.models import AuditEntry
from experiments.choices import RunStatus
from experiments.models import Run
from experiments.services.preflight import PreflightError, preflight
from experiments.services.runs import start_run
from experiments.spec import validate_spec
from governance.models import Policy

pytestmark = pytest.mark.django_db

# Wednesday 2026-11-25, 10:00 UTC = 11:00 in Paris.
WEDNESDAY_10_UTC = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


@pytest.fixture
def prod_target(make_target: Any) -> Any:
    return make_target("demo", environment="production")


@pytest.fixture
def prod_experiment(prod_target: Any, make_spec: Any) -> Any:
    from experiments.services.catalog import create_experiment

    return create_experiment(make_spec(), actor=None, source="system")


def _policy(**fields: Any) -> Policy:
    fields.setdefault("name", "prod-safety")
    fields.setdefault("environment", "production")
    return Policy.objects.create(**fields)


def _check(experiment: Any, *, now: datetime = WEDNESDAY_10_UTC, approved: bool = True) -> None:
    run = Run(experiment=experiment, experiment_version=1, spec=experiment.spec, dry_run=True)
    if not approved:
        run.dry_run = False
    run.pk = None
    spec = validate_spec(experiment.spec)
    preflight(run, spec, experiment.target, now=now)


def test_no_policy_means_no_extra_rules(prod_experiment: Any) -> None:
    _check(prod_experiment)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"allowed_families": ["http", "process"]}, "fault family 'network' is not allowed"),
        ({"max_intensity": 0.5}, "blast radius 1 exceeds the maximum 0.5"),
        ({"max_duration_s": 10}, "duration 20 s exceeds the maximum 10 s"),
    ],
)
def test_preflight_refuses_with_the_policy_named(
    prod_experiment: Any, fields: dict[str, Any], message: str
) -> None:
    _policy(**fields)
    with pytest.raises(PreflightError) as refused:
        _check(prod_experiment)
    assert "policy 'prod-safety' (production)" in str(refused.value)
    assert message in str(refused.value)


def test_rules_within_limits_pass(prod_experiment: Any) -> None:
    _policy(allowed_families=["network"], max_intensity=1.0, max_duration_s=60)
    _check(prod_experiment)


def test_policies_of_other_environments_and_disabled_ones_do_not_apply(
    prod_experiment: Any,
) -> None:
    _policy(name="staging-only", environment="staging", allowed_families=["http"])
    Policy.objects.create(
        name="off", environment="production", enabled=False, allowed_families=["http"]
    )
    _check(prod_experiment)


def test_time_windows_in_the_policy_time_zone(prod_experiment: Any) -> None:
    _policy(
        timezone="Europe/Paris",
        time_windows=[{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00",
                       "end": "17:00"}],
    )  # fmt: skip
    _check(prod_experiment, now=WEDNESDAY_10_UTC)  # 11:00 in Paris
    with pytest.raises(PreflightError, match="outside the allowed time windows"):
        _check(prod_experiment, now=datetime(2026, 11, 25, 7, 30, tzinfo=UTC))  # 08:30 Paris
    with pytest.raises(PreflightError, match="outside the allowed time windows"):
        _check(prod_experiment, now=datetime(2026, 11, 28, 10, 0, tzinfo=UTC))  # Saturday
    # Baseline 10 s + fault 20 s must end before 17:00: starting at 16:59:45 is too late.
    with pytest.raises(PreflightError, match="prod-safety"):
        _check(prod_experiment, now=datetime(2026, 11, 25, 15, 59, 45, tzinfo=UTC))
    _check(prod_experiment, now=datetime(2026, 11, 25, 15, 59, 0, tzinfo=UTC))


def test_blackouts_refuse_overlapping_runs(prod_experiment: Any) -> None:
    _policy(
        blackouts=[{"start": "2026-11-25T10:00:20Z", "end": "2026-11-25T12:00:00Z",
                    "reason": "release freeze"}],
    )  # fmt: skip
    with pytest.raises(PreflightError, match="release freeze"):
        _check(prod_experiment, now=WEDNESDAY_10_UTC)  # exposure runs into the freeze
    _check(prod_experiment, now=datetime(2026, 11, 25, 12, 0, 1, tzinfo=UTC))
    _check(prod_experiment, now=datetime(2026, 11, 25, 9, 0, tzinfo=UTC))


def test_an_unapproved_run_is_refused_by_preflight(prod_experiment: Any) -> None:
    _policy(requires_approval=True)
    with pytest.raises(PreflightError, match="needs an approval"):
        _check(prod_experiment, approved=False)


# --- approvals through the API -----------------------------------------------------------


@pytest.fixture
def approval_policy(prod_target: Any) -> Policy:
    return _policy(requires_approval=True)


def test_production_run_waits_for_approval_and_is_queued_once_approved(
    approval_policy: Policy, prod_experiment: Any, operator_client: Any, approver_client: Any
) -> None:
    started = operator_client.post(f"/api/v1/experiments/{prod_experiment.pk}/start/", {})
    assert started.status_code == 201, started.content
    run = started.json()
    assert run["status"] == RunStatus.AWAITING_APPROVAL
    assert "awaiting approval" in run["events"][0]["message"]
    approved = approver_client.post(f"/api/v1/runs/{run['id']}/approve/")
    assert approved.status_code == 202, approved.content
    assert approved.json()["status"] == RunStatus.QUEUED
    assert approved.json()["approved_by"] == "april-approver"
    entry = AuditEntry.objects.get(action="run.approve")
    assert entry.actor_name == "april-approver" and entry.source == "api"
    # Approving twice is a conflict with the run's state.
    again = approver_client.post(f"/api/v1/runs/{run['id']}/approve/")
    assert again.status_code == 409


def test_the_requester_cannot_approve_their_own_run(
    approval_policy: Policy, prod_experiment: Any, approver_client: Any
) -> None:
    started = approver_client.post(f"/api/v1/experiments/{prod_experiment.pk}/start/", {})
    assert started.json()["status"] == RunStatus.AWAITING_APPROVAL
    response = approver_client.post(f"/api/v1/runs/{started.json()['id']}/approve/")
    assert response.status_code == 403
    assert "cannot approve" in response.json()["detail"]
    assert Run.objects.get().status == RunStatus.AWAITING_APPROVAL


def test_operators_cannot_approve(
    approval_policy: Policy, prod_experiment: Any, operator_client: Any, approver: Any
) -> None:
    run = start_run(prod_experiment, actor=approver, source="api")
    response = operator_client.post(f"/api/v1/runs/{run.pk}/approve/")
    assert response.status_code == 403
    assert "approver" in response.json()["detail"]


def test_dry_runs_and_other_environments_need_no_approval(
    approval_policy: Policy, prod_experiment: Any, operator: Any, make_target: Any
) -> None:
    assert start_run(prod_experiment, actor=operator, source="api", dry_run=True).status == (
        RunStatus.QUEUED
    )


def test_a_waiting_run_can_be_aborted(
    approval_policy: Policy, prod_experiment: Any, operator_client: Any, operator: Any
) -> None:
    run = start_run(prod_experiment, actor=operator, source="api")
    response = operator_client.post(f"/api/v1/runs/{run.pk}/abort/", {"reason": "changed mind"})
    assert response.status_code == 202
    assert response.json()["status"] == RunStatus.ABORTED


# --- policy management ----------------------------------------------------------------------


def test_admins_manage_policies_with_validation_and_audit(admin_client: Any) -> None:
    body = {
        "name": "prod",
        "environment": "production",
        "allowed_families": ["network"],
        "time_windows": [{"days": ["mon"], "start": "09:00", "end": "17:00"}],
        "timezone": "Europe/Paris",
        "requires_approval": True,
    }
    created = admin_client.post("/api/v1/policies/", body, format="json")
    assert created.status_code == 201, created.content
    assert AuditEntry.objects.filter(action="policy.create").count() == 1
    patched = admin_client.patch(
        f"/api/v1/policies/{created.json()['id']}/", {"max_intensity": 0.25}, format="json"
    )
    assert patched.status_code == 200
    change = AuditEntry.objects.get(action="policy.update").changes
    assert change == {"max_intensity": {"before": None, "after": 0.25}}


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("timezone", "Mars/Olympus", "timezone"),
        ("max_intensity", 1.5, "max_intensity"),
        ("time_windows", [{"days": ["someday"], "start": "9", "end": "17:00"}], "time_windows[0]"),
        ("time_windows", [{"days": ["mon"], "start": "18:00", "end": "06:00"}], "time_windows[0]"),
        ("blackouts", [{"start": "soon", "end": "2026-01-01T00:00Z"}], "blackouts[0]"),
    ],
)
def test_bad_policies_are_400_with_the_field_path(
    admin_client: Any, field: str, value: Any, path: str
) -> None:
    body = {"name": "prod", "environment": "production", field: value}
    response = admin_client.post("/api/v1/policies/", body, format="json")
    assert response.status_code == 400, response.content
    assert path in response.json()["errors"]
