"""The campaigns and game-days API: input errors name the field, state refusals are 409,
every change leaves an audit entry, and a game day's timeline reads in order."""

from __future__ import annotations

import pytest
from django_celery_beat.models import PeriodicTask

from audit.models import AuditEntry
from campaigns.models import Campaign, GameDay

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign(operator_client, experiments):
    response = operator_client.post(
        "/api/v1/campaigns/",
        {
            "name": "nightly",
            "experiments": ["exp-2", "exp-1"],
            "schedule_kind": "interval",
            "interval_seconds": 60,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def test_creating_a_campaign_keeps_the_experiment_order_and_schedules_it(campaign, operator):
    assert campaign["experiments"] == ["exp-2", "exp-1"]
    assert campaign["mode"] == "serial"
    task = PeriodicTask.objects.get(name=campaign["periodic_task"])
    assert task.enabled and task.interval.every == 60
    entry = AuditEntry.objects.get(action="campaign.create")
    assert entry.actor == operator and entry.source == "api"
    assert entry.changes["experiments"] == ["exp-2", "exp-1"]


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"name": "x", "experiments": ["nope"]}, "experiments", "no experiment named nope"),
        ({"name": "x", "experiments": []}, "experiments", "empty"),
        (
            {"name": "x", "experiments": ["exp-1"], "schedule_kind": "interval"},
            "interval_seconds",
            "required",
        ),
        (
            {"name": "x", "experiments": ["exp-1"], "schedule_kind": "crontab", "crontab": "* *"},
            "crontab",
            "five fields",
        ),
        (
            {"name": "x", "experiments": ["exp-1"], "mode": "parallel", "concurrency": 0},
            "concurrency",
            "greater than or equal to 1",
        ),
        ({"name": "x", "experiments": ["exp-1"], "mode": "sideways"}, "mode", "valid choice"),
    ],
)
def test_bad_campaign_input_is_a_400_naming_the_field(
    operator_client, experiments, body, field, reason
):
    response = operator_client.post("/api/v1/campaigns/", body, format="json")
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert field in errors, errors
    assert reason in " ".join(errors[field])
    assert not Campaign.objects.exists()


def test_pause_and_resume_through_the_api_switch_the_beat_entry(operator_client, campaign):
    url = f"/api/v1/campaigns/{campaign['id']}"
    assert operator_client.post(f"{url}/pause/").json()["paused"] is True
    assert not PeriodicTask.objects.get(name=campaign["periodic_task"]).enabled
    assert operator_client.post(f"{url}/resume/").json()["paused"] is False
    assert PeriodicTask.objects.get(name=campaign["periodic_task"]).enabled


def test_a_patch_changes_the_schedule_and_audits_what_changed(operator_client, campaign):
    response = operator_client.patch(
        f"/api/v1/campaigns/{campaign['id']}/",
        {"schedule_kind": "crontab", "crontab": "0 3 * * *"},
        format="json",
    )
    assert response.status_code == 200, response.content
    task = PeriodicTask.objects.get(name=campaign["periodic_task"])
    assert task.crontab.hour == "3" and task.interval is None
    entry = AuditEntry.objects.get(action="campaign.update")
    assert entry.changes["schedule_kind"] == ["interval", "crontab"]


def test_triggering_twice_is_a_conflict_while_the_first_execution_runs(operator_client, campaign):
    url = f"/api/v1/campaigns/{campaign['id']}/trigger/"
    first = operator_client.post(url)
    assert first.status_code == 201, first.content
    assert [s["experiment"] for s in first.json()["steps"]] == ["exp-2", "exp-1"]
    assert first.json()["steps"][0]["run_status"] == "queued"
    second = operator_client.post(url)
    assert second.status_code == 409
    assert "still running" in second.json()["detail"]


def test_the_kill_switch_refuses_a_manual_trigger_with_409(operator_client, campaign):
    operator_client.post("/api/v1/kill-switch/engage/", {"reason": "drill"}, format="json")
    response = operator_client.post(f"/api/v1/campaigns/{campaign['id']}/trigger/")
    assert response.status_code == 409
    assert "kill switch" in response.json()["detail"]


def test_campaign_runs_can_be_filtered_by_campaign_and_status(operator_client, campaign):
    operator_client.post(f"/api/v1/campaigns/{campaign['id']}/trigger/")
    listed = operator_client.get("/api/v1/campaign-runs/?campaign=nightly&status=running").json()
    assert listed["count"] == 1
    bad = operator_client.get("/api/v1/campaign-runs/?status=bogus")
    assert bad.status_code == 400 and "status" in bad.json()["errors"]


def test_a_game_day_steps_one_experiment_at_a_time_with_notes_and_a_timeline(
    operator_client, viewer_client, campaign, viewer, finish_run
):
    created = operator_client.post(
        "/api/v1/game-days/",
        {"name": "friday drill", "campaign": "nightly", "observers": ["vera-viewer"]},
        format="json",
    )
    assert created.status_code == 201, created.content
    gd = created.json()
    assert gd["observers"] == ["vera-viewer"] and gd["status"] == "planned"
    url = f"/api/v1/game-days/{gd['id']}"

    step = operator_client.post(f"{url}/next-step/")
    assert step.status_code == 201, step.content
    steps = step.json()["execution"]["steps"]
    assert steps[0]["run"] is not None and steps[1]["run"] is None
    busy = operator_client.post(f"{url}/next-step/")
    assert busy.status_code == 409 and "still queued" in busy.json()["detail"]

    note = operator_client.post(f"{url}/notes/", {"text": "p95 up | pager quiet"}, format="json")
    assert note.status_code == 201 and note.json()["author"] == "otto-operator"
    assert operator_client.post(f"{url}/notes/", {}, format="json").status_code == 400

    from experiments.models import Run

    finish_run(Run.objects.get(pk=steps[0]["run"]), verdict="failed")
    assert operator_client.post(f"{url}/next-step/").status_code == 201
    finish_run(Run.objects.latest("id"))
    done = operator_client.post(f"{url}/next-step/")
    assert done.status_code == 409 and "no steps left" in done.json()["detail"]
    finished = operator_client.post(f"{url}/finish/").json()
    assert finished["status"] == "finished"
    assert finished["execution"]["summary"]["failed"] == 1
    assert operator_client.post(f"{url}/finish/").status_code == 409

    timeline = viewer_client.get(f"{url}/timeline/").json()
    kinds = [e["kind"] for e in timeline["entries"]]
    assert kinds[0] == "created" and kinds[-1] == "finished"
    assert kinds.index("started") < kinds.index("step") < kinds.index("note")
    assert kinds.count("step") == 2 and kinds.count("run_end") == 2
    times = [e["at"] for e in timeline["entries"]]
    assert times == sorted(times)

    markdown = viewer_client.get(f"{url}/timeline/markdown/")
    assert markdown.status_code == 200
    assert markdown["Content-Type"].startswith("text/markdown")
    text = markdown.content.decode()
    assert text.startswith("# Game day: friday drill")
    assert "Observers: vera-viewer" in text
    assert "**otto-operator**: p95 up \\| pager quiet" in text

    actions = set(
        AuditEntry.objects.filter(object_type="campaigns.gameday").values_list("action", flat=True)
    )
    assert actions == {"game_day.create", "game_day.step", "game_day.note", "game_day.finish"}


def test_observers_must_be_known_users(operator_client, campaign):
    response = operator_client.post(
        "/api/v1/game-days/",
        {"name": "x", "campaign": "nightly", "observers": ["ghost"]},
        format="json",
    )
    assert response.status_code == 400
    assert "ghost" in response.json()["errors"]["observers"][0]
    assert not GameDay.objects.exists()


def test_a_campaign_with_game_days_cannot_be_deleted(operator_client, campaign):
    operator_client.post("/api/v1/game-days/", {"name": "x", "campaign": "nightly"}, format="json")
    response = operator_client.delete(f"/api/v1/campaigns/{campaign['id']}/")
    assert response.status_code == 409


def test_deleting_a_campaign_removes_its_beat_entry(operator_client, campaign):
    response = operator_client.delete(f"/api/v1/campaigns/{campaign['id']}/")
    assert response.status_code == 204
    assert not PeriodicTask.objects.filter(name=campaign["periodic_task"]).exists()
    assert AuditEntry.objects.filter(action="campaign.delete").exists()


def test_cancelling_an_execution_aborts_its_run_and_frees_the_schedule(operator_client, campaign):
    url = f"/api/v1/campaigns/{campaign['id']}/trigger/"
    execution = operator_client.post(url).json()
    cancel = f"/api/v1/campaign-runs/{execution['id']}/cancel/"
    response = operator_client.post(cancel, {"reason": "stuck"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "cancelled" and body["reason"] == "stuck"
    assert body["steps"][0]["run_status"] == "aborted"
    assert body["summary"]["aborted"] == 1 and body["summary"]["not_run"] == 1
    assert operator_client.post(cancel, {}, format="json").status_code == 409
    assert operator_client.post(url).status_code == 201  # no longer "still running"
    assert AuditEntry.objects.filter(action="campaign.cancel").exists()
