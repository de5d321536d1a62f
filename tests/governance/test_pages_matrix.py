"""Teams in the web UI: every page × every kind of caller.

``PAGES`` has one row per route of ``web.urls`` (a route without a row fails
``test_every_page_is_in_the_matrix``) and one row per action a route takes (GET, POST).
The callers are anonymous, a user without a team, a member of the owning team with each
role (membership alone, no global group), and members of another team. A member of the
owning team gets the row's answer when their role is high enough, else 403; a member of
another team sees none of the owning team's objects (lists without them, 404 on them) and
changes nothing; anonymous users are sent to the login page.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from django.test import Client
from django.urls import URLPattern, reverse

from audit.models import AuditEntry
from campaigns.models import Campaign, CampaignRun, GameDay
from experiments.models import Experiment, KillSwitch, Run, Target
from governance.models import Team, TeamMembership, default_team_id
from scep.permissions import OPERATOR, ROLES, VIEWER
from tests.experiments.api.test_permissions import _spec, world  # noqa: F401
from web import urls as web_urls

pytestmark = pytest.mark.django_db

PLATFORM = "platform-operator"  # the kill switch: a global role, not a team role
PUBLIC = None


def _new_spec(ids: dict[str, int]) -> dict[str, str]:
    """An experiment on the owning team's target."""
    return {"spec": yaml.safe_dump(_spec(name="fresh"), sort_keys=False)}


def _same_spec(ids: dict[str, int]) -> dict[str, str]:
    spec = {**Experiment.objects.get(pk=ids["experiment"]).spec, "description": "edited"}
    return {"spec": yaml.safe_dump(spec, sort_keys=False)}


def _campaign_form(name: str) -> dict[str, str]:
    return {"name": name, "experiments": "latency-demo", "mode": "serial", "schedule_kind": "none"}


NEW_CAMPAIGN = _campaign_form("fresh-campaign")
SAME_CAMPAIGN = _campaign_form("main-campaign")
GAME_DAY = {"name": "drill", "campaign": "main-campaign"}


# (route name, method, URL kwargs from the world, form data, minimum role, success status,
#  status for a member of another team who holds the minimum role there).
# ``None`` as a kwarg source means the route takes no object.
PAGES: list[tuple[str, str, dict[str, str], Any, str | None, int, int]] = [
    ("login", "get", {}, None, PUBLIC, 200, 302),
    ("logout", "post", {}, {}, PUBLIC, 302, 302),
    ("dashboard", "get", {}, None, VIEWER, 200, 200),
    ("dashboard-live", "get", {}, None, VIEWER, 200, 200),
    ("kill-switch", "post", {}, {"action": "engage"}, PLATFORM, 302, 403),
    ("targets", "get", {}, None, VIEWER, 200, 200),
    ("experiments", "get", {}, None, VIEWER, 200, 200),
    ("experiment-new", "get", {}, None, OPERATOR, 200, 200),
    # The spec's target (in the owning team) decides where the experiment goes.
    ("experiment-new", "post", {}, _new_spec, OPERATOR, 302, 403),
    ("experiment-check", "post", {}, _new_spec, OPERATOR, 200, 403),
    ("experiment", "get", {"pk": "experiment"}, None, VIEWER, 200, 404),
    ("experiment-edit", "get", {"pk": "experiment"}, None, OPERATOR, 200, 404),
    ("experiment-edit", "post", {"pk": "experiment"}, _same_spec, OPERATOR, 302, 404),
    ("experiment-start", "post", {"pk": "experiment"}, {}, OPERATOR, 302, 404),
    ("runs", "get", {}, None, VIEWER, 200, 200),
    ("run", "get", {"pk": "run"}, None, VIEWER, 200, 404),
    ("run-live", "get", {"pk": "run"}, None, VIEWER, 200, 404),
    ("run-abort", "post", {"pk": "run"}, {}, OPERATOR, 302, 404),
    ("report", "get", {"pk": "run"}, None, VIEWER, 200, 404),
    ("report-export", "get", {"pk": "run", "fmt": "=json"}, None, VIEWER, 200, 404),
    ("suggestions", "get", {}, None, VIEWER, 200, 200),
    ("suggestion-accept", "post", {"pk": "suggestion"}, {"start": "0"}, OPERATOR, 302, 404),
    ("campaigns", "get", {}, None, VIEWER, 200, 200),
    ("campaign-new", "get", {}, None, OPERATOR, 200, 200),
    # Another team's experiments do not exist for the caller: the form names the field.
    ("campaign-new", "post", {}, NEW_CAMPAIGN, OPERATOR, 302, 400),
    ("campaign", "get", {"pk": "campaign"}, None, VIEWER, 200, 404),
    ("campaign-edit", "get", {"pk": "campaign"}, None, OPERATOR, 200, 404),
    ("campaign-edit", "post", {"pk": "campaign"}, SAME_CAMPAIGN, OPERATOR, 302, 404),
    ("campaign-pause", "post", {"pk": "campaign"}, {}, OPERATOR, 302, 404),
    ("campaign-resume", "post", {"pk": "campaign"}, {}, OPERATOR, 302, 404),
    ("campaign-trigger", "post", {"pk": "campaign"}, {}, OPERATOR, 302, 404),
    ("campaign-report", "get", {"pk": "campaign"}, None, VIEWER, 200, 404),
    ("campaign-run-cancel", "post", {"pk": "campaign_run"}, {}, OPERATOR, 302, 404),
    ("game-days", "get", {}, None, VIEWER, 200, 200),
    ("game-day-new", "post", {}, GAME_DAY, OPERATOR, 302, 400),
    ("game-day", "get", {"pk": "game_day"}, None, VIEWER, 200, 404),
    ("game-day-next", "post", {"pk": "game_day"}, {}, OPERATOR, 302, 404),
    ("game-day-note", "post", {"pk": "game_day"}, {"text": "latency up"}, OPERATOR, 302, 404),
    ("game-day-observers", "post", {"pk": "game_day"}, {"observers": ""}, OPERATOR, 302, 404),
    ("game-day-finish", "post", {"pk": "game_day"}, {}, OPERATOR, 302, 404),
    ("static-asset", "get", {"path": "=web/scep.css"}, None, PUBLIC, 200, 200),
]  # fmt: skip

# What a list page must not show a member of another team.
OWNED_NAMES = ("latency-demo", "main-campaign", "friday drill", "suggested-experiment")
TEAM_ROLES = [f"own-{role}" for role in ROLES]
CALLERS = ["anonymous", "no-team", *TEAM_ROLES, "other-viewer", "other-admin"]


def _url(name: str, kwargs: dict[str, str], ids: dict[str, int]) -> str:
    args = {k: v[1:] if v.startswith("=") else ids[v] for k, v in kwargs.items()}
    return reverse(f"web:{name}", kwargs=args)


def _caller(caller: str, django_user_model: Any) -> tuple[Client, Any]:
    client = Client()
    if caller == "anonymous":
        return client, None
    user = django_user_model.objects.create_user(f"caller-{caller}", password=None)
    if caller.startswith("own-"):
        team = Team.objects.get(pk=default_team_id())
        TeamMembership.objects.create(team=team, user=user, role=caller[4:])
    elif caller.startswith("other-"):
        red, _ = Team.objects.get_or_create(name="red")
        TeamMembership.objects.create(team=red, user=user, role=caller[6:])
    client.force_login(user)
    return client, user


def _state() -> tuple[Any, ...]:
    """What any action could change: counts, statuses, the kill switch."""
    return (
        Experiment.objects.count(),
        tuple(Experiment.objects.order_by("pk").values_list("version", flat=True)),
        tuple(Run.objects.order_by("pk").values_list("status", flat=True)),
        tuple(Campaign.objects.order_by("pk").values_list("paused", flat=True)),
        tuple(CampaignRun.objects.order_by("pk").values_list("status", flat=True)),
        tuple(GameDay.objects.order_by("pk").values_list("status", flat=True)),
        GameDay.objects.filter(notes__isnull=False).count(),
        KillSwitch.get().engaged,
    )


def _expected(caller: str, row: tuple[Any, ...]) -> int:
    name, _method, _kwargs, _data, minimum, success, other = row
    if minimum is PUBLIC:
        if name == "login":  # signed-in users are sent on to the dashboard
            return 200 if caller == "anonymous" else 302
        return success
    if caller == "anonymous":
        return 302  # to the login page
    if minimum == PLATFORM:
        return 403  # team roles never reach the platform-wide kill switch
    if caller == "no-team":
        return 403
    role = caller.split("-", 1)[1]
    if ROLES.index(role) < ROLES.index(minimum):
        return 403
    return success if caller.startswith("own-") else other


def test_every_page_is_in_the_matrix() -> None:
    routed = {p.name for p in web_urls.urlpatterns if isinstance(p, URLPattern)}
    assert len(routed) == len(web_urls.urlpatterns), "every web route has a name"
    covered = {row[0] for row in PAGES}
    assert routed - covered == set(), f"web pages without a matrix row: {routed - covered}"
    assert covered - routed == set(), f"matrix rows without a page: {covered - routed}"
    posts = {row[0] for row in PAGES if row[1] == "post"}
    assert {"experiment-start", "run-abort", "campaign-trigger", "game-day-finish"} <= posts


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("row", [pytest.param(r, id=f"{r[1]}-{r[0]}") for r in PAGES])
def test_page_matrix(
    django_user_model: Any,
    world: dict[str, int],  # noqa: F811
    caller: str,
    row: tuple[Any, ...],
) -> None:
    name, method, kwargs, data, _minimum, _success, _other = row
    client, user = _caller(caller, django_user_model)
    url = _url(name, kwargs, world)
    body = data(world) if callable(data) else data
    before = _state()
    last_audit = AuditEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0
    response = client.get(url) if method == "get" else client.post(url, body)
    expected = _expected(caller, row)
    assert response.status_code == expected, (
        caller,
        response.status_code,
        response.content[:400],
    )
    if caller == "anonymous" and expected == 302 and name != "logout":
        assert response["Location"].startswith(reverse("web:login")), response["Location"]
    succeeded = caller.startswith("own-") and expected == row[5]
    if method == "post" and not succeeded and name != "logout":
        assert _state() == before, f"{caller} changed something with {name}"
    if method == "post" and succeeded and name not in ("logout", "experiment-check"):
        entries = AuditEntry.objects.filter(id__gt=last_audit, actor=user)
        assert entries.exists(), f"{name} left no audit entry"
        assert set(entries.values_list("source", flat=True)) == {"ui"}
    if caller.startswith("other-") and method == "get" and expected == 200 and not kwargs:
        html = response.content.decode()
        leaked = [n for n in OWNED_NAMES if n in html]
        assert leaked == [], f"{name} shows another team's objects: {leaked}"


@pytest.mark.parametrize("role", ["operator", "admin"])
def test_the_kill_switch_needs_the_global_role(
    roles: None,
    django_user_model: Any,
    world: dict[str, int],  # noqa: F811
    role: str,
) -> None:
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user(f"global-{role}", password=None)
    user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    response = client.post(reverse("web:kill-switch"), {"action": "engage"})
    assert response.status_code == 302
    assert KillSwitch.get().engaged
    assert AuditEntry.objects.filter(actor=user, source="ui").exists()


def test_an_operator_in_one_team_and_viewer_in_another_gets_buttons_only_in_the_first(
    django_user_model: Any,
    world: dict[str, int],  # noqa: F811
    make_target: Any,
    make_experiment: Any,
) -> None:
    red = Team.objects.create(name="red")
    make_target("red-db", team=red)
    red_experiment = make_experiment(name="red-latency", target="red-db")
    assert red_experiment.team_id == red.pk
    user = django_user_model.objects.create_user("two-hats", password=None)
    TeamMembership.objects.create(team=red, user=user, role="operator")
    TeamMembership.objects.create(team_id=default_team_id(), user=user, role="viewer")
    client = Client()
    client.force_login(user)

    theirs = client.get(reverse("web:experiment", args=[world["experiment"]])).content.decode()
    assert 'id="experiment-name"' in theirs and 'id="start-run"' not in theirs
    refused = client.post(reverse("web:experiment-start", args=[world["experiment"]]))
    assert refused.status_code == 403
    assert "team &#x27;default&#x27;" in refused.content.decode()

    mine = client.get(reverse("web:experiment", args=[red_experiment.pk])).content.decode()
    assert 'id="start-run"' in mine
    started = client.post(reverse("web:experiment-start", args=[red_experiment.pk]))
    assert started.status_code == 302
    run = Run.objects.get(experiment=red_experiment)
    assert started["Location"] == reverse("web:run", args=[run.pk])
    # Both teams' objects are listed, each with the buttons of its own team.
    listed = client.get(reverse("web:experiments")).content.decode()
    assert "red-latency" in listed and "latency-demo" in listed
    # The editor: an experiment on the default team's target is refused, on red's allowed.
    spec = yaml.safe_dump(_spec(name="sneaky"), sort_keys=False)
    assert client.post(reverse("web:experiment-new"), {"spec": spec}).status_code == 403
    red_spec = yaml.safe_dump(_spec(name="red-two", target="red-db"), sort_keys=False)
    created = client.post(reverse("web:experiment-new"), {"spec": red_spec})
    assert created.status_code == 302, created.content[:400]
    assert Experiment.objects.get(name="red-two").team_id == red.pk
    assert not Experiment.objects.filter(name="sneaky").exists()
    assert Target.objects.get(name="red-db").team_id == red.pk
