"""The admin by role: every registered model's pages are closed to non-staff users of any
role, and the admin *actions* that change the platform (abort runs, engage or release
the kill switch) need the same role as the API, whatever Django model permissions the
staff user was given."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.db.models import Q
from django.test import Client

from audit.models import AuditEntry
from experiments.choices import RunStatus
from experiments.models import KillSwitch, Run
from experiments.services.runs import start_run
from scep.permissions import ADMIN, OPERATOR, ROLES

pytestmark = pytest.mark.django_db

CHANGELISTS = sorted(
    f"/admin/{model._meta.app_label}/{model._meta.model_name}/" for model in admin.site._registry
)


def _user(django_user_model: Any, role: str, *, staff: bool) -> Any:
    user = django_user_model.objects.create_user(f"{role}-{staff}", password=None)
    user.groups.add(Group.objects.get(name=role))
    if staff:
        user.is_staff = True
        user.save()
        # Every view/change permission: only the role may make the difference below.
        user.user_permissions.add(
            *Permission.objects.filter(
                Q(codename__startswith="view_") | Q(codename__startswith="change_")
            )
        )
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("role", ROLES)
def test_non_staff_users_of_any_role_get_no_admin_page(
    roles: None, django_user_model: Any, role: str
) -> None:
    client = _user(django_user_model, role, staff=False)
    assert len(CHANGELISTS) >= 15
    for url in CHANGELISTS:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/admin/login/"), url


def test_superusers_get_every_admin_page(django_user_model: Any, experiment: Any) -> None:
    boss = django_user_model.objects.create_superuser("boss", "b@example.com", None)
    client = Client()
    client.force_login(boss)
    for url in CHANGELISTS:
        assert client.get(url).status_code == 200, url


def _action(client: Client, model: str, action: str, pk: int) -> None:
    client.post(f"/admin/experiments/{model}/", {"action": action, "_selected_action": [pk]})


@pytest.mark.parametrize("role", ROLES)
def test_admin_actions_need_the_api_role(
    roles: None, django_user_model: Any, experiment: Any, role: str
) -> None:
    client = _user(django_user_model, role, staff=True)
    rank = ROLES.index(role)
    run = start_run(experiment, actor=None, source="system")
    _action(client, "run", "abort_selected", run.pk)
    aborted = Run.objects.get(pk=run.pk).status == RunStatus.ABORTED
    assert aborted == (rank >= ROLES.index(OPERATOR)), role

    switch = KillSwitch.get()
    _action(client, "killswitch", "engage", switch.pk)
    assert KillSwitch.get().engaged == (rank >= ROLES.index(OPERATOR)), role
    KillSwitch.objects.filter(pk=1).update(engaged=True)
    _action(client, "killswitch", "release", switch.pk)
    assert KillSwitch.get().engaged == (rank < ROLES.index(ADMIN)), role
    sources = set(AuditEntry.objects.exclude(source="system").values_list("source", flat=True))
    assert sources <= {"admin"}


def _team_staff(django_user_model: Any, name: str, roles: dict[Any, str]) -> Client:
    """A staff user with every view/change permission whose roles are memberships only."""
    from governance.models import TeamMembership

    user = django_user_model.objects.create_user(name, password=None, is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            Q(codename__startswith="view_") | Q(codename__startswith="change_")
        )
    )
    for team, role in roles.items():
        TeamMembership.objects.create(team=team, user=user, role=role)
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("role", ROLES)
def test_campaign_admin_actions_need_the_operator_role_in_the_campaigns_team(
    django_user_model: Any, make_target: Any, make_experiment: Any, role: str
) -> None:
    from campaigns.models import Campaign
    from campaigns.services import create_campaign
    from governance.models import Team

    red = Team.objects.create(name="red")
    make_target("red-db", team=red)
    red_campaign = create_campaign(
        actor=None,
        source="system",
        name="red-c",
        experiments=[make_experiment(name="red-latency", target="red-db")],
    )
    blue_campaign = create_campaign(
        actor=None, source="system", name="blue-c", experiments=[make_experiment()]
    )
    client = _team_staff(django_user_model, f"red-{role}", {red: role})
    listing = client.get("/admin/campaigns/campaign/")
    assert listing.status_code == 200
    assert b"red-c" in listing.content and b"blue-c" not in listing.content
    for pk in (red_campaign.pk, blue_campaign.pk):
        client.post("/admin/campaigns/campaign/", {"action": "pause", "_selected_action": [pk]})
    operates = ROLES.index(role) >= ROLES.index(OPERATOR)
    assert Campaign.objects.get(pk=red_campaign.pk).paused == operates, role
    assert not Campaign.objects.get(pk=blue_campaign.pk).paused  # another team's: untouched
    # The change form: only in the campaign's team, and only from operator up.
    edit = client.post(
        f"/admin/campaigns/campaign/{red_campaign.pk}/change/",
        {
            "name": "red-c",
            "team": str(red.pk),
            "description": "edited",
            "mode": "serial",
            "concurrency": "2",
            "schedule_kind": "none",
            "interval_seconds": "",
            "crontab": "",
            "items-TOTAL_FORMS": "0",
            "items-INITIAL_FORMS": "0",
        },
    )
    assert edit.status_code == (302 if operates else 403), (role, edit.status_code)
    assert (Campaign.objects.get(pk=red_campaign.pk).description == "edited") == operates
    other = client.get(f"/admin/campaigns/campaign/{blue_campaign.pk}/change/")
    assert other.status_code in (302, 404)
    sources = set(
        AuditEntry.objects.filter(action__startswith="campaign.")
        .exclude(source="system")
        .values_list("source", flat=True)
    )
    assert sources == ({"admin"} if operates else set())


def test_campaign_admin_refuses_another_teams_experiments(
    django_user_model: Any, make_target: Any, make_experiment: Any
) -> None:
    from campaigns.models import Campaign
    from governance.models import Team

    red = Team.objects.create(name="red")
    make_target("red-db", team=red)
    blue_experiment = make_experiment()
    boss = django_user_model.objects.create_superuser("boss", "b@example.com", None)
    client = Client()
    client.force_login(boss)
    response = client.post(
        "/admin/campaigns/campaign/add/",
        {
            "name": "mixed",
            "team": str(red.pk),
            "description": "",
            "mode": "serial",
            "concurrency": "2",
            "schedule_kind": "none",
            "interval_seconds": "",
            "crontab": "",
            "items-TOTAL_FORMS": "1",
            "items-INITIAL_FORMS": "0",
            "items-0-experiment": str(blue_experiment.pk),
            "items-0-position": "1",
        },
    )
    assert response.status_code == 200  # the form again, with the error
    assert b"experiments of another team" in response.content
    assert not Campaign.objects.filter(name="mixed").exists()


def test_a_campaign_added_in_the_admin_goes_only_to_a_team_the_staff_operates_in(
    django_user_model: Any, make_target: Any, make_experiment: Any
) -> None:
    from campaigns.models import Campaign
    from governance.models import Team

    red = Team.objects.create(name="red")
    make_target("red-db", team=red)
    red_experiment = make_experiment(name="red-latency", target="red-db")
    client = _team_staff(django_user_model, "red-operator", {red: "operator"})
    staff = django_user_model.objects.get(username="red-operator")
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["add_campaign"]))
    form = {
        "name": "red-weekly",
        "description": "",
        "mode": "serial",
        "concurrency": "2",
        "schedule_kind": "none",
        "interval_seconds": "",
        "crontab": "",
        "items-TOTAL_FORMS": "1",
        "items-INITIAL_FORMS": "0",
        "items-0-experiment": str(red_experiment.pk),
        "items-0-position": "1",
    }
    # Team left empty means the default team, where this user holds no role.
    empty = {**form, "team": "", "items-TOTAL_FORMS": "0"}
    refused = client.post("/admin/campaigns/campaign/add/", empty)
    assert refused.status_code == 403
    assert not Campaign.objects.filter(name="red-weekly").exists()
    added = client.post("/admin/campaigns/campaign/add/", {**form, "team": str(red.pk)})
    assert added.status_code == 302, added.content[:1500]
    assert Campaign.objects.get(name="red-weekly").team_id == red.pk


def test_game_day_observers_in_the_admin_must_be_members_of_the_team(
    django_user_model: Any, experiment: Any
) -> None:
    from campaigns.models import GameDay
    from campaigns.services import create_campaign, create_game_day

    campaign = create_campaign(actor=None, source="system", name="c", experiments=[experiment])
    game_day = create_game_day(
        campaign=campaign, name="drill", observers=[], actor=None, source="system"
    )
    stranger = django_user_model.objects.create_user("stranger", password=None)
    boss = django_user_model.objects.create_superuser("boss", "b@example.com", None)
    client = Client()
    client.force_login(boss)
    url = f"/admin/campaigns/gameday/{game_day.pk}/change/"
    form = {
        "campaign": str(campaign.pk),
        "name": "drill",
        "notes-TOTAL_FORMS": "0",
        "notes-INITIAL_FORMS": "0",
    }
    refused = client.post(url, {**form, "observers": [str(stranger.pk)]})
    assert refused.status_code == 200
    assert b"not members of team" in refused.content
    assert not GameDay.objects.get(pk=game_day.pk).observers.exists()
    saved = client.post(url, {**form, "observers": [str(boss.pk)]})  # superusers: every team
    assert saved.status_code == 302, saved.content[:1500]
