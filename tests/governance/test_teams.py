"""Teams: every team-scoped endpoint of the role matrix, for members of the owning team
(by membership alone, no global role) and for members of another team.

The matrix rows and the world they point at come from
``tests/experiments/api/test_permissions.py``; here the callers change: a user whose
only role is a *membership* gets exactly the matrix's answers in their own team, and in
another team sees nothing (lists without the objects, 404 on them) and changes nothing.
"""

from __future__ import annotations

from typing import Any

import pytest

from campaigns.models import Campaign, CampaignRun, GameDay, GameDayNote
from experiments.models import Experiment, Run, Target
from experiments.services import access
from governance.models import Team, TeamMembership, default_team_id
from scep.permissions import ROLES
from tests.conftest import _client
from tests.experiments.api.test_permissions import MATRIX, expected_status, world  # noqa: F401

pytestmark = pytest.mark.django_db

TEAM_STEMS = (
    "/api/v1/targets/",
    "/api/v1/experiments/",
    "/api/v1/runs/",
    "/api/v1/faults/",
    "/api/v1/findings/",
    "/api/v1/suggestions/",
    "/api/v1/campaigns/",
    "/api/v1/campaign-runs/",
    "/api/v1/game-days/",
)
# Creations that *name* an object of the owning team: for another team that object does
# not exist, so the answer is a 400 naming the field, as for any unknown name.
BY_REFERENCE = {"/api/v1/campaigns/": "experiments", "/api/v1/game-days/": "campaign"}
TEAM_ROWS = [row for row in MATRIX if row[2].startswith(TEAM_STEMS)]


def _member(django_user_model: Any, team: Team, role: str) -> Any:
    user = django_user_model.objects.create_user(f"{team.name}-{role}", password=None)
    TeamMembership.objects.create(team=team, user=user, role=role)
    return user


def test_the_team_rows_cover_every_team_scoped_collection() -> None:
    stems = {row[2].split("{")[0] for row in TEAM_ROWS}
    assert set(TEAM_STEMS) <= {stem for stem in stems if stem in TEAM_STEMS}
    assert len(TEAM_ROWS) >= 20


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    ("method", "url", "body", "minimum", "success"),
    [pytest.param(*row[1:], id=row[0]) for row in TEAM_ROWS],
)
def test_membership_in_the_owning_team_gives_the_matrix_answer(
    django_user_model: Any,
    world: dict[str, int],  # noqa: F811
    viewer: Any,  # the game-day rows name this user as an observer
    role: str,
    method: str,
    url: str,
    body: Any,
    minimum: str,
    success: int,
) -> None:
    user = _member(django_user_model, Team.objects.get(pk=default_team_id()), role)
    response = getattr(_client(user), method)(url.format(**world), body, format="json")
    expected = expected_status(role, minimum, success)
    assert response.status_code == expected, (role, response.status_code, response.content[:300])


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    ("method", "url", "body", "minimum", "success"),
    [pytest.param(*row[1:], id=row[0]) for row in TEAM_ROWS],
)
def test_members_of_another_team_see_nothing_and_change_nothing(
    django_user_model: Any,
    world: dict[str, int],  # noqa: F811
    role: str,
    method: str,
    url: str,
    body: Any,
    minimum: str,
    success: int,
) -> None:
    red = Team.objects.create(name="red")
    user = _member(django_user_model, red, role)
    before = _counts()
    response = getattr(_client(user), method)(url.format(**world), body, format="json")
    allowed = ROLES.index(role) >= ROLES.index(minimum)
    is_detail = "{" in url or "network.latency" in url
    if method == "get" and not is_detail:
        assert response.status_code == 200, response.content[:300]
        payload = response.json()
        rows = payload["results"] if isinstance(payload, dict) else payload
        assert rows == [], f"another team's objects leaked: {rows[:1]}"
    elif not allowed:
        assert response.status_code == 403, (response.status_code, response.content[:300])
    elif is_detail:
        assert response.status_code == 404, (response.status_code, response.content[:300])
    elif url in BY_REFERENCE:
        assert response.status_code == 400, (response.status_code, response.content[:300])
        assert BY_REFERENCE[url] in response.json()["errors"], response.json()
    else:  # creating something in the default team, where the user has no role
        assert response.status_code == 403, (response.status_code, response.content[:300])
        assert "team 'default'" in response.json()["detail"]
    assert _counts() == before


def _counts() -> tuple[Any, ...]:
    return (
        Target.objects.count(),
        Experiment.objects.count(),
        Run.objects.count(),
        tuple(Campaign.objects.order_by("pk").values_list("paused", "updated_at")),
        tuple(CampaignRun.objects.order_by("pk").values_list("status", flat=True)),
        tuple(GameDay.objects.order_by("pk").values_list("status", flat=True)),
        GameDayNote.objects.count(),
    )


def test_an_admin_of_one_team_can_register_targets_there_only(
    django_user_model: Any, roles: None
) -> None:
    red = Team.objects.create(name="red")
    client = _client(_member(django_user_model, red, "admin"))
    mine = client.post("/api/v1/targets/", {"name": "red-db", "team": "red"}, format="json")
    assert mine.status_code == 201, mine.content
    assert mine.json()["team"] == "red"
    elsewhere = client.post("/api/v1/targets/", {"name": "blue-db"}, format="json")
    assert elsewhere.status_code == 403
    # Global endpoints keep needing a global role: a team admin is not a platform admin.
    assert client.get("/api/v1/audit/").status_code == 403
    assert client.post("/api/v1/kill-switch/release/", {}).status_code == 403


def test_experiments_follow_their_target_into_its_team(
    make_experiment: Any, admin_client: Any, django_user_model: Any
) -> None:
    experiment = make_experiment()
    assert experiment.team_id == experiment.target.team_id == default_team_id()
    red = Team.objects.create(name="red")
    admin_user = django_user_model.objects.get(username="ada-admin")
    TeamMembership.objects.create(team=red, user=admin_user, role="admin")
    moved = admin_client.patch(
        f"/api/v1/targets/{experiment.target_id}/", {"team": "red"}, format="json"
    )
    assert moved.status_code == 200, moved.content
    experiment.refresh_from_db()
    assert experiment.team_id == red.pk


def test_superusers_see_every_team(django_user_model: Any, make_target: Any) -> None:
    red = Team.objects.create(name="red")
    make_target("in-red", team=red)
    make_target("in-default")
    boss = django_user_model.objects.create_superuser("boss", "b@example.com", None)
    names = {t["name"] for t in _client(boss).get("/api/v1/targets/").json()["results"]}
    assert names == {"in-red", "in-default"}
    assert access.team_roles(boss) is None


def test_admin_pages_show_staff_only_their_teams(
    client: Any, django_user_model: Any, make_target: Any
) -> None:
    from django.contrib.auth.models import Permission

    red = Team.objects.create(name="red")
    make_target("in-red", team=red)
    make_target("in-default")
    staff = _member(django_user_model, red, "admin")
    staff.is_staff = True
    staff.save()
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_target"]))
    client.force_login(staff)
    page = client.get("/admin/experiments/target/")
    assert page.status_code == 200
    assert b"in-red" in page.content and b"in-default" not in page.content
    other = Target.objects.get(name="in-default")
    assert client.get(f"/admin/experiments/target/{other.pk}/change/").status_code in (302, 404)


def test_team_membership_changes_in_the_admin_are_audited(
    client: Any, django_user_model: Any
) -> None:
    from audit.models import AuditEntry

    boss = django_user_model.objects.create_superuser("boss", "b@example.com", None)
    alice = django_user_model.objects.create_user("alice", password=None)
    client.force_login(boss)
    form = {
        "name": "red",
        "description": "",
        "memberships-TOTAL_FORMS": "1",
        "memberships-INITIAL_FORMS": "0",
        "memberships-0-user": str(alice.pk),
        "memberships-0-role": "operator",
    }
    response = client.post("/admin/governance/team/add/", form)
    assert response.status_code == 302, response.content[:800]
    assert access.team_role(alice, Team.objects.get(name="red").pk) == "operator"
    members = AuditEntry.objects.get(action="team.members")
    assert members.changes["members"] == {"before": [], "after": ["alice:operator"]}
    assert members.source == "admin"


def test_teams_endpoint_lists_only_the_callers_teams_with_their_role(
    django_user_model: Any, roles: None
) -> None:
    red = Team.objects.create(name="red")
    Team.objects.create(name="blue")
    client = _client(_member(django_user_model, red, "approver"))
    rows = client.get("/api/v1/teams/").json()["results"]
    assert [(r["name"], r["your_role"]) for r in rows] == [("red", "approver")]
    assert rows[0]["members"] == {"red-approver": "approver"}
    blue = Team.objects.get(name="blue")
    assert client.get(f"/api/v1/teams/{blue.pk}/").status_code == 404


def test_a_campaign_holds_only_its_own_teams_experiments(
    django_user_model: Any, make_target: Any, make_experiment: Any
) -> None:
    red = Team.objects.create(name="red")
    make_target("red-db", team=red)
    make_experiment(name="red-latency", target="red-db")
    make_experiment(name="blue-latency")  # the default team's target
    user = _member(django_user_model, red, "operator")
    TeamMembership.objects.create(team_id=default_team_id(), user=user, role="operator")
    client = _client(user)
    mixed = client.post(
        "/api/v1/campaigns/",
        {"name": "mixed", "experiments": ["red-latency", "blue-latency"]},
        format="json",
    )
    assert mixed.status_code == 400, mixed.content
    assert "blue-latency" in mixed.json()["errors"]["experiments"][0]
    named = client.post(
        "/api/v1/campaigns/",
        {"name": "named", "team": "red", "experiments": ["blue-latency"]},
        format="json",
    )
    assert named.status_code == 400
    assert "experiments" in named.json()["errors"]
    mine = client.post(
        "/api/v1/campaigns/", {"name": "red-weekly", "experiments": ["red-latency"]}, format="json"
    )
    assert mine.status_code == 201, mine.content
    assert mine.json()["team"] == "red"
    assert Campaign.objects.get(name="red-weekly").team_id == red.pk
    assert not Campaign.objects.filter(name__in=["mixed", "named"]).exists()


def test_a_viewer_in_the_campaigns_team_cannot_act_on_it(
    django_user_model: Any, make_target: Any, make_experiment: Any
) -> None:
    from campaigns.services import create_campaign

    red = Team.objects.create(name="red")
    make_target("red-db", team=red)
    experiment = make_experiment(name="red-latency", target="red-db")
    campaign = create_campaign(actor=None, source="system", name="red-c", experiments=[experiment])
    assert campaign.team_id == red.pk
    user = _member(django_user_model, red, "viewer")
    TeamMembership.objects.create(team_id=default_team_id(), user=user, role="operator")
    client = _client(user)
    assert client.get(f"/api/v1/campaigns/{campaign.pk}/").status_code == 200
    refused = client.post(f"/api/v1/campaigns/{campaign.pk}/pause/", {}, format="json")
    assert refused.status_code == 403, refused.content
    assert "team" in refused.json()["detail"]
    campaign.refresh_from_db()
    assert not campaign.paused


def test_game_day_observers_must_be_members_of_the_team(
    django_user_model: Any, make_target: Any, make_experiment: Any
) -> None:
    from campaigns.services import create_campaign

    red = Team.objects.create(name="red")
    make_target("red-db", team=red)
    experiment = make_experiment(name="red-latency", target="red-db")
    create_campaign(actor=None, source="system", name="red-c", experiments=[experiment])
    lead = _member(django_user_model, red, "operator")
    _member(django_user_model, red, "viewer")
    django_user_model.objects.create_user("stranger", password=None)
    client = _client(lead)
    refused = client.post(
        "/api/v1/game-days/",
        {"name": "drill", "campaign": "red-c", "observers": ["red-viewer", "stranger"]},
        format="json",
    )
    assert refused.status_code == 400, refused.content
    assert "stranger" in refused.json()["errors"]["observers"][0]
    assert not GameDay.objects.exists()
    planned = client.post(
        "/api/v1/game-days/",
        {"name": "drill", "campaign": "red-c", "observers": ["red-viewer"]},
        format="json",
    )
    assert planned.status_code == 201, planned.content
    game_day = planned.json()["id"]
    patched = client.patch(
        f"/api/v1/game-days/{game_day}/", {"observers": ["stranger"]}, format="json"
    )
    assert patched.status_code == 400
    assert "observers" in patched.json()["errors"]
    assert [u.username for u in GameDay.objects.get(pk=game_day).observers.all()] == ["red-viewer"]
