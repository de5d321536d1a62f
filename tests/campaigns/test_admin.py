"""The schedule is editable in the Django admin: saving a campaign there rewrites its beat
entry and is audited with source ``admin``; a bad crontab is refused on the form."""

from __future__ import annotations

import pytest
from django_celery_beat.models import PeriodicTask

from audit.models import AuditEntry
from campaigns.models import Campaign

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_site(client, django_user_model):
    boss = django_user_model.objects.create_superuser("boss", "boss@example.com", None)
    client.force_login(boss)
    return client


def form(experiment_id: int, **fields: str) -> dict[str, str]:
    data = {
        "name": "weekly",
        "description": "",
        "mode": "serial",
        "concurrency": "2",
        "schedule_kind": "crontab",
        "interval_seconds": "",
        "crontab": "0 4 * * 1",
        "items-TOTAL_FORMS": "1",
        "items-INITIAL_FORMS": "0",
        "items-MIN_NUM_FORMS": "0",
        "items-MAX_NUM_FORMS": "1000",
        "items-0-experiment": str(experiment_id),
        "items-0-position": "1",
    }
    data.update(fields)
    return data


def test_a_campaign_added_in_the_admin_gets_its_crontab_beat_entry(admin_site, experiment):
    response = admin_site.post("/admin/campaigns/campaign/add/", form(experiment.pk))
    assert response.status_code == 302, response.content[:2000]
    campaign = Campaign.objects.get(name="weekly")
    assert campaign.experiments == [experiment.name]
    task = PeriodicTask.objects.get(pk=campaign.periodic_task_id)
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("0", "4", "1")
    entry = AuditEntry.objects.get(action="campaign.create")
    assert entry.source == "admin" and entry.actor_name == "boss"

    change = f"/admin/campaigns/campaign/{campaign.pk}/change/"
    edited = form(
        experiment.pk,
        schedule_kind="interval",
        interval_seconds="90",
        crontab="",
        **{"items-INITIAL_FORMS": "1", "items-0-id": str(campaign.items.get().pk)},
        **{"items-0-campaign": str(campaign.pk)},
    )
    assert admin_site.post(change, edited).status_code == 302
    task.refresh_from_db()
    assert task.crontab is None and task.interval.every == 90


def test_the_admin_form_refuses_a_bad_crontab(admin_site, experiment):
    response = admin_site.post("/admin/campaigns/campaign/add/", form(experiment.pk, crontab="0 4"))
    assert response.status_code == 200
    assert b"five fields" in response.content
    assert not Campaign.objects.exists()
