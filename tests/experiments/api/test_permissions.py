"""The role matrix, as one table: every endpoint × method × role → expected status.

Each row names the *minimum* role; the expected status for each caller follows from it
(anonymous → 401, a lower role → 403, that role or higher → the row's success status),
so the table reads like the matrix in the docs and a wrong declaration shows up as one
failing cell.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from analysis.models import Finding, Suggestion
from campaigns.services import create_campaign, create_game_day, trigger_campaign
from experiments.choices import RunStatus
from experiments.models import Run, Target
from experiments.services.runs import start_run
from governance.models import Policy
from injectors.models import ActiveFault, Agent
from notifications.models import NotificationChannel, NotificationDelivery
from scep.permissions import ADMIN, APPROVER, OPERATOR, ROLES, VIEWER
from tests.conftest import VALID_SPEC

CALLERS = ("anonymous", *ROLES)


def _spec(**overrides: Any) -> dict[str, Any]:
    spec = copy.deepcopy(VALID_SPEC)
    spec.update(overrides)
    return spec


# (row id, method, url template, body, minimum role, success status); None = public.
MATRIX: list[tuple[str, str, str, Any, str | None, int]] = [
    ("api-root", "get", "/api/v1/", None, VIEWER, 200),
    ("schema", "get", "/api/v1/schema/", None, None, 200),
    ("docs", "get", "/api/v1/docs/", None, None, 200),
    # targets
    ("targets-list", "get", "/api/v1/targets/", None, VIEWER, 200),
    ("targets-detail", "get", "/api/v1/targets/{target}/", None, VIEWER, 200),
    (
        "targets-create",
        "post",
        "/api/v1/targets/",
        {"name": "fresh", "config": {"proxies": {}}},
        ADMIN,
        201,
    ),
    (
        "targets-update",
        "put",
        "/api/v1/targets/{spare_target}/",
        {"name": "spare", "description": "renewed"},
        ADMIN,
        200,
    ),
    (
        "targets-patch",
        "patch",
        "/api/v1/targets/{target}/",
        {"description": "patched"},
        ADMIN,
        200,
    ),
    ("targets-delete", "delete", "/api/v1/targets/{spare_target}/", None, ADMIN, 204),
    # experiments
    ("experiments-list", "get", "/api/v1/experiments/", None, VIEWER, 200),
    ("experiments-detail", "get", "/api/v1/experiments/{experiment}/", None, VIEWER, 200),
    (
        "experiments-versions",
        "get",
        "/api/v1/experiments/{experiment}/versions/",
        None,
        VIEWER,
        200,
    ),
    (
        "experiments-create",
        "post",
        "/api/v1/experiments/",
        {"spec": _spec(name="brand-new")},
        OPERATOR,
        201,
    ),
    (
        "experiments-update",
        "put",
        "/api/v1/experiments/{experiment}/",
        {"spec": _spec(duration="25s")},
        OPERATOR,
        200,
    ),
    (
        "experiments-delete",
        "delete",
        "/api/v1/experiments/{spare_experiment}/",
        None,
        OPERATOR,
        204,
    ),
    (
        "experiments-validate",
        "post",
        "/api/v1/experiments/validate/",
        {"spec": _spec()},
        OPERATOR,
        200,
    ),
    (
        "experiments-start",
        "post",
        "/api/v1/experiments/{experiment}/start/",
        {"dry_run": True},
        OPERATOR,
        201,
    ),
    # runs
    ("runs-list", "get", "/api/v1/runs/", None, VIEWER, 200),
    ("runs-detail", "get", "/api/v1/runs/{run}/", None, VIEWER, 200),
    ("runs-create", "post", "/api/v1/runs/", {"experiment": "latency-demo"}, OPERATOR, 201),
    ("runs-abort", "post", "/api/v1/runs/{run}/abort/", {"reason": "drill"}, OPERATOR, 202),
    ("runs-approve", "post", "/api/v1/runs/{waiting_run}/approve/", {}, APPROVER, 202),
    # teams (the caller's own) and safety policies
    ("teams-list", "get", "/api/v1/teams/", None, VIEWER, 200),
    ("teams-detail", "get", "/api/v1/teams/{team}/", None, VIEWER, 200),
    ("policies-list", "get", "/api/v1/policies/", None, VIEWER, 200),
    ("policies-detail", "get", "/api/v1/policies/{policy}/", None, VIEWER, 200),
    (
        "policies-create",
        "post",
        "/api/v1/policies/",
        {"name": "dev", "environment": "development"},
        ADMIN,
        201,
    ),
    ("policies-patch", "patch", "/api/v1/policies/{policy}/", {"max_intensity": 0.5}, ADMIN, 200),
    (
        "policies-update",
        "put",
        "/api/v1/policies/{policy}/",
        {"name": "prod", "environment": "production", "requires_approval": True},
        ADMIN,
        200,
    ),
    ("policies-delete", "delete", "/api/v1/policies/{policy}/", None, ADMIN, 204),
    # kill switch
    ("kill-switch-state", "get", "/api/v1/kill-switch/", None, VIEWER, 200),
    ("kill-switch-engage", "post", "/api/v1/kill-switch/engage/", {"reason": "x"}, OPERATOR, 200),
    ("kill-switch-release", "post", "/api/v1/kill-switch/release/", {}, ADMIN, 200),
    # read-only collections
    ("faults-list", "get", "/api/v1/faults/", None, VIEWER, 200),
    ("faults-detail", "get", "/api/v1/faults/{fault}/", None, VIEWER, 200),
    ("agents-list", "get", "/api/v1/agents/", None, VIEWER, 200),
    ("agents-detail", "get", "/api/v1/agents/{agent}/", None, VIEWER, 200),
    ("fault-types-list", "get", "/api/v1/fault-types/", None, VIEWER, 200),
    ("fault-types-detail", "get", "/api/v1/fault-types/network.latency/", None, VIEWER, 200),
    ("audit-list", "get", "/api/v1/audit/", None, ADMIN, 200),
    ("audit-detail", "get", "/api/v1/audit/{audit}/", None, ADMIN, 200),
    ("audit-export", "get", "/api/v1/audit/export/?format=csv", None, ADMIN, 200),
    # failure flags (polled by applications)
    ("failure-flags-active", "get", "/api/v1/failure-flags/active/", None, VIEWER, 200),
    # analysis
    ("findings-list", "get", "/api/v1/findings/", None, VIEWER, 200),
    ("findings-detail", "get", "/api/v1/findings/{finding}/", None, VIEWER, 200),
    ("suggestions-list", "get", "/api/v1/suggestions/", None, VIEWER, 200),
    ("suggestions-detail", "get", "/api/v1/suggestions/{suggestion}/", None, VIEWER, 200),
    (
        "suggestions-accept",
        "post",
        "/api/v1/suggestions/{suggestion}/accept/",
        {},
        OPERATOR,
        201,
    ),
    ("runs-report", "get", "/api/v1/runs/{run}/report/", None, VIEWER, 200),
    ("runs-recommendations", "get", "/api/v1/runs/{run}/recommendations/", None, VIEWER, 200),
    ("targets-scores", "get", "/api/v1/targets/{target}/scores/", None, VIEWER, 200),
    # notifications (channel URLs are secrets: operators read masked, admins write)
    ("channels-list", "get", "/api/v1/notification-channels/", None, OPERATOR, 200),
    ("channels-detail", "get", "/api/v1/notification-channels/{channel}/", None, OPERATOR, 200),
    (
        "channels-create",
        "post",
        "/api/v1/notification-channels/",
        {"name": "fresh", "kind": "webhook", "url": "https://hooks.example.com/h/s3cret"},
        ADMIN,
        201,
    ),
    (
        "channels-update",
        "put",
        "/api/v1/notification-channels/{channel}/",
        {"name": "ops-hook", "kind": "webhook", "events": ["run.failed"], "enabled": True},
        ADMIN,
        200,
    ),
    (
        "channels-patch",
        "patch",
        "/api/v1/notification-channels/{channel}/",
        {"enabled": False},
        ADMIN,
        200,
    ),
    (
        "channels-delete",
        "delete",
        "/api/v1/notification-channels/{spare_channel}/",
        None,
        ADMIN,
        204,
    ),
    ("channels-test", "post", "/api/v1/notification-channels/{channel}/test/", {}, ADMIN, 200),
    ("deliveries-list", "get", "/api/v1/notification-deliveries/", None, OPERATOR, 200),
    (
        "deliveries-detail",
        "get",
        "/api/v1/notification-deliveries/{delivery}/",
        None,
        OPERATOR,
        200,
    ),
    # campaigns and game days (viewers read, operators write)
    ("campaigns-list", "get", "/api/v1/campaigns/", None, VIEWER, 200),
    ("campaigns-detail", "get", "/api/v1/campaigns/{campaign}/", None, VIEWER, 200),
    (
        "campaigns-create",
        "post",
        "/api/v1/campaigns/",
        {"name": "fresh-campaign", "experiments": ["latency-demo"]},
        OPERATOR,
        201,
    ),
    (
        "campaigns-update",
        "put",
        "/api/v1/campaigns/{spare_campaign}/",
        {"name": "spare-campaign", "experiments": ["latency-demo"], "mode": "parallel"},
        OPERATOR,
        200,
    ),
    (
        "campaigns-patch",
        "patch",
        "/api/v1/campaigns/{campaign}/",
        {"description": "patched"},
        OPERATOR,
        200,
    ),
    ("campaigns-delete", "delete", "/api/v1/campaigns/{spare_campaign}/", None, OPERATOR, 204),
    ("campaigns-pause", "post", "/api/v1/campaigns/{campaign}/pause/", {}, OPERATOR, 200),
    ("campaigns-resume", "post", "/api/v1/campaigns/{campaign}/resume/", {}, OPERATOR, 200),
    ("campaigns-trigger", "post", "/api/v1/campaigns/{campaign}/trigger/", {}, OPERATOR, 201),
    ("campaigns-report", "get", "/api/v1/campaigns/{campaign}/report/", None, VIEWER, 200),
    ("campaign-runs-list", "get", "/api/v1/campaign-runs/", None, VIEWER, 200),
    (
        "campaign-runs-detail",
        "get",
        "/api/v1/campaign-runs/{campaign_run}/",
        None,
        VIEWER,
        200,
    ),
    (
        "campaign-runs-cancel",
        "post",
        "/api/v1/campaign-runs/{campaign_run}/cancel/",
        {"reason": "stuck"},
        OPERATOR,
        200,
    ),
    ("game-days-list", "get", "/api/v1/game-days/", None, VIEWER, 200),
    ("game-days-detail", "get", "/api/v1/game-days/{game_day}/", None, VIEWER, 200),
    (
        "game-days-create",
        "post",
        "/api/v1/game-days/",
        {"name": "drill", "campaign": "main-campaign"},
        OPERATOR,
        201,
    ),
    (
        "game-days-patch",
        "patch",
        "/api/v1/game-days/{game_day}/",
        {"observers": ["vera-viewer"]},
        OPERATOR,
        200,
    ),
    (
        "game-days-next-step",
        "post",
        "/api/v1/game-days/{game_day}/next-step/",
        {},
        OPERATOR,
        201,
    ),
    (
        "game-days-notes",
        "post",
        "/api/v1/game-days/{game_day}/notes/",
        {"text": "latency up"},
        OPERATOR,
        201,
    ),
    ("game-days-finish", "post", "/api/v1/game-days/{game_day}/finish/", {}, OPERATOR, 200),
    (
        "game-days-timeline",
        "get",
        "/api/v1/game-days/{game_day}/timeline/",
        None,
        VIEWER,
        200,
    ),
    (
        "game-days-timeline-markdown",
        "get",
        "/api/v1/game-days/{game_day}/timeline/markdown/",
        None,
        VIEWER,
        200,
    ),
]


def expected_status(caller: str, minimum: str | None, success: int) -> int:
    if minimum is None:
        return success
    if caller == "anonymous":
        return 401
    return success if ROLES.index(caller) >= ROLES.index(minimum) else 403


@pytest.fixture
def world(target: Target, make_target: Any, make_experiment: Any) -> dict[str, int]:
    """One of everything the URLs in the matrix point at."""
    from audit.models import AuditEntry

    spare_target = make_target("spare", config={})
    experiment = make_experiment()
    spare_experiment = make_experiment(name="spare-experiment")
    run: Run = start_run(experiment, actor=None, source="system")
    waiting_run = Run.objects.create(
        experiment=experiment,
        experiment_version=1,
        spec=experiment.spec,
        status=RunStatus.AWAITING_APPROVAL,
    )
    policy = Policy.objects.create(name="prod", environment="production")
    fault = ActiveFault.objects.create(
        run=run,
        target=target,
        injector="network.latency",
        params={"proxy": "downstream", "latency_ms": 300},
        agent="local",
        state="reverted",
        expires_at=timezone.now() + timedelta(minutes=1),
    )
    agent = Agent.objects.create(name="local", hostname="here")
    finding = Finding.objects.create(
        run=run, metric="latency", kind="degradation", severity="high", confidence=0.9,
        title="latency degraded",
    )  # fmt: skip
    suggestion = Suggestion.objects.create(
        run=run, kind="blast_radius", title="twice the intensity",
        spec=_spec(name="suggested-experiment"),
    )  # fmt: skip
    # Port 9 (discard) has no listener here: the test button fails fast, answering 200.
    channel = NotificationChannel.objects.create(
        name="ops-hook", kind="webhook", url="http://127.0.0.1:9/hook", events=["run.finished"]
    )
    spare_channel = NotificationChannel.objects.create(
        name="spare-hook", kind="slack", url="https://hooks.example.com/services/x"
    )
    delivery = NotificationDelivery.objects.create(channel=channel, event="run.finished", run=run)
    campaign = create_campaign(
        actor=None, source="system", name="main-campaign", experiments=[experiment]
    )
    spare_campaign = create_campaign(
        actor=None, source="system", name="spare-campaign", experiments=[experiment]
    )
    campaign_run = trigger_campaign(spare_campaign, trigger="manual", actor=None, source="system")
    game_day = create_game_day(
        campaign=campaign, name="friday drill", observers=[], actor=None, source="system"
    )
    return {
        "campaign": campaign.pk,
        "spare_campaign": spare_campaign.pk,
        "campaign_run": campaign_run.pk,
        "game_day": game_day.pk,
        "channel": channel.pk,
        "spare_channel": spare_channel.pk,
        "delivery": delivery.pk,
        "finding": finding.pk,
        "suggestion": suggestion.pk,
        "target": target.pk,
        "spare_target": spare_target.pk,
        "experiment": experiment.pk,
        "spare_experiment": spare_experiment.pk,
        "run": run.pk,
        "waiting_run": waiting_run.pk,
        "policy": policy.pk,
        "team": target.team_id,
        "fault": fault.pk,
        "agent": agent.pk,
        "audit": AuditEntry.objects.latest("id").pk,
    }


@pytest.mark.django_db
@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(
    ("method", "url", "body", "minimum", "success"),
    [pytest.param(*row[1:], id=row[0]) for row in MATRIX],
)
def test_role_matrix(
    client_for: Any,
    world: dict[str, int],
    caller: str,
    method: str,
    url: str,
    body: Any,
    minimum: str | None,
    success: int,
) -> None:
    client = client_for(caller)
    response = getattr(client, method)(url.format(**world), body, format="json")
    expected = expected_status(caller, minimum, success)
    assert response.status_code == expected, (caller, response.status_code, response.content[:300])
    if expected == 401:
        assert "WWW-Authenticate" in response.headers
    if expected == 403:
        assert minimum in response.json()["detail"]


@pytest.mark.django_db
def test_user_without_role_is_forbidden_everywhere(norole_user: Any, world: dict[str, int]) -> None:
    from tests.conftest import _client

    client = _client(norole_user)
    assert client.get("/api/v1/experiments/").status_code == 403
    assert client.get("/api/v1/kill-switch/").status_code == 403


@pytest.mark.django_db
def test_superuser_counts_as_admin(django_user_model: Any, world: dict[str, int]) -> None:
    from scep.permissions import user_role
    from tests.conftest import _client

    boss = django_user_model.objects.create_superuser("boss", "boss@example.com", None)
    assert user_role(boss) == ADMIN
    assert _client(boss).get("/api/v1/audit/").status_code == 200


def test_role_helpers_without_database() -> None:
    from django.contrib.auth.models import AnonymousUser

    from scep.permissions import user_role

    assert user_role(AnonymousUser()) is None
    assert user_role(None) is None


@pytest.mark.django_db
def test_every_routed_endpoint_is_in_the_matrix() -> None:
    """A new route without a row here would escape the matrix: fail instead."""
    from django.urls import get_resolver

    covered = {row[2].split("{")[0].rstrip("/") for row in MATRIX}
    patterns = []

    def walk(resolver: Any, prefix: str) -> None:
        for entry in resolver.url_patterns:
            text = prefix + str(entry.pattern)
            if hasattr(entry, "url_patterns"):
                walk(entry, text)
            else:
                patterns.append(text)

    walk(get_resolver(), "")
    api = [p for p in patterns if p.startswith("api/v1/") and "format" not in p]
    for pattern in api:
        stem = "/" + pattern.split("(?P")[0].split("<")[0].replace("^", "").rstrip("/$")
        assert any(c.startswith(stem.rstrip("/")) for c in covered), pattern


@pytest.mark.django_db
def test_post_migrate_hook_creates_the_role_groups() -> None:
    from django.apps import apps
    from django.contrib.auth.models import Group

    from experiments.signals import create_role_groups

    Group.objects.filter(name__in=ROLES).delete()
    create_role_groups(sender=apps.get_app_config("auth"))  # other apps: ignored
    assert not Group.objects.filter(name__in=ROLES).exists()
    create_role_groups(sender=apps.get_app_config("experiments"))
    create_role_groups(sender=apps.get_app_config("experiments"))  # idempotent
    assert sorted(Group.objects.values_list("name", flat=True)) == sorted(ROLES)
