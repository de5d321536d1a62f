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
