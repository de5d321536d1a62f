"""Campaign and game-day pages through Django's test client on the real database: who
sees what and who may post, the campaign form judged by the API's serializer (errors at
the field, nothing saved), pause/resume following to the beat entry, run now, the report's
score chart with a flagged regression, and a game day stepped, noted and finished."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from audit.models import AuditEntry
from campaigns import services
from campaigns.choices import ExecutionStatus, GameDayStatus, ScheduleKind, Trigger
from campaigns.models import Campaign, CampaignRun, GameDay, GameDayNote
from experiments.models import Run
from tests.campaigns.conftest import experiments, finish_run  # noqa: F401  (fixtures)
from web.campaign_charts import score_trend_chart

pytestmark = pytest.mark.django_db

EXTERNAL = re.compile(r'(src|href)="(https?:)?//', re.I)
MUTATING = (
    'id="new-campaign"',
    'id="run-now"',
    'id="pause-campaign"',
    'id="resume-campaign"',
    'id="edit-campaign"',
    'id="next-step"',
    'id="finish-game-day"',
    'id="add-note"',
    'id="create-game-day"',
    'id="save-observers"',
)


@pytest.fixture
def campaign(experiments):  # noqa: F811
    return services.create_campaign(
        actor="test",
        source="system",
        name="nightly",
        experiments=[experiments[1], experiments[0]],
        schedule_kind=ScheduleKind.INTERVAL,
        interval_seconds=1800,
    )


@pytest.fixture
def game_day(campaign, viewer):
    return services.create_game_day(
        campaign=campaign, name="friday drill", observers=[viewer], actor="test", source="system"
    )


def field_error(html: str, field: str) -> str:
    """The message shown at a form field, '' when there is none."""
    found = re.search(rf'class="field-error" data-field="{field}"[^>]*>([^<]+)<', html)
    return found.group(1) if found else ""


def page_urls(campaign, game_day) -> list[str]:
    return [
        reverse("web:campaigns"),
        reverse("web:campaign", args=[campaign.pk]),
        reverse("web:campaign-report", args=[campaign.pk]),
        reverse("web:game-days"),
        reverse("web:game-day", args=[game_day.pk]),
    ]


def test_anonymous_visitors_are_sent_to_the_login_page(campaign, game_day):
    client = Client()
    for url in [*page_urls(campaign, game_day), reverse("web:campaign-new")]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("web:login")), url


def test_a_viewer_reads_every_page_and_sees_no_mutating_buttons(viewer_web, campaign, game_day):
    services.trigger_campaign(campaign, trigger=Trigger.MANUAL, actor="test", source="system")
    for url in page_urls(campaign, game_day):
        response = viewer_web.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert not EXTERNAL.search(html), f"{url} loads something from another host"
        for button in MUTATING:
            assert button not in html, f"{url} shows {button} to a viewer"
    nav = viewer_web.get(reverse("web:dashboard")).content.decode()
    assert reverse("web:campaigns") in nav and reverse("web:game-days") in nav
    listing = viewer_web.get(reverse("web:campaigns")).content.decode()
    assert "every 30 minutes" in listing and "Running" in listing
    detail = viewer_web.get(reverse("web:campaign", args=[campaign.pk])).content.decode()
    assert detail.index("exp-2") < detail.index("exp-1")  # in the campaign's order
    run = Run.objects.get()
    assert reverse("web:run", args=[run.pk]) in detail  # the step links to its run


def test_a_viewer_cannot_post_anything(viewer_web, campaign, game_day):
    execution = services.trigger_campaign(
        campaign, trigger=Trigger.MANUAL, actor="test", source="system"
    )
    posts = [
        (reverse("web:campaign-new"), {"name": "x", "experiments": "exp-1"}),
        (reverse("web:campaign-edit", args=[campaign.pk]), {"name": "y", "experiments": "exp-1"}),
        (reverse("web:campaign-pause", args=[campaign.pk]), {}),
        (reverse("web:campaign-resume", args=[campaign.pk]), {}),
        (reverse("web:campaign-trigger", args=[campaign.pk]), {}),
        (reverse("web:campaign-run-cancel", args=[execution.pk]), {}),
        (reverse("web:game-day-new"), {"name": "g", "campaign": "nightly"}),
        (reverse("web:game-day-next", args=[game_day.pk]), {}),
        (reverse("web:game-day-note", args=[game_day.pk]), {"text": "hello"}),
        (reverse("web:game-day-observers", args=[game_day.pk]), {"observers": ""}),
        (reverse("web:game-day-finish", args=[game_day.pk]), {}),
    ]
    for url, data in posts:
        response = viewer_web.post(url, data)
        assert response.status_code == 403, url
        assert "operator" in response.content.decode()
    assert list(Campaign.objects.values_list("name", "paused")) == [("nightly", False)]
    assert CampaignRun.objects.count() == 1 and Run.objects.count() == 1
    game_day.refresh_from_db()
    assert game_day.status == GameDayStatus.PLANNED and game_day.observers.count() == 1
    assert GameDay.objects.count() == 1 and not GameDayNote.objects.exists()


@pytest.mark.parametrize(
    ("form", "field", "reason"),
    [
        ({"name": "new-one", "experiments": "exp-1\nnope"}, "experiments", "no experiment named"),
        ({"name": "new-one", "experiments": ""}, "experiments", "empty"),
        ({"name": "has spaces", "experiments": "exp-1"}, "name", "letters"),
        ({"name": "nightly", "experiments": "exp-1"}, "name", "already exists"),
        (
            {"name": "new-one", "experiments": "exp-1", "schedule_kind": "interval"},
            "interval_seconds",
            "required",
        ),
        (
            {"name": "new-one", "experiments": "exp-1", "schedule_kind": "crontab"},
            "crontab",
            "five fields",
        ),
        (
            {
                "name": "new-one",
                "experiments": "exp-1",
                "schedule_kind": "crontab",
                "crontab": "99 * * * *",
            },
            "crontab",
            "",
        ),
        (
            {"name": "new-one", "experiments": "exp-1", "concurrency": "0"},
            "concurrency",
            "equal to 1",
        ),
        ({"name": "new-one", "experiments": "exp-1", "mode": "sideways"}, "mode", "valid choice"),
    ],
)
def test_invalid_campaign_input_is_a_400_with_the_error_at_its_field(
    operator_web, campaign, form, field, reason
):
    tasks = PeriodicTask.objects.count()
    response = operator_web.post(reverse("web:campaign-new"), form)
    assert response.status_code == 400
    html = response.content.decode()
    message = field_error(html, field)
    assert message.startswith(f"{field}: "), html
    assert reason.lower() in message.lower()
    assert "nothing was saved" in html
    assert f'value="{form["name"]}"' in html  # the input is kept for fixing
    assert list(Campaign.objects.values_list("name", flat=True)) == ["nightly"]
    assert PeriodicTask.objects.count() == tasks


def test_an_operator_creates_and_edits_a_campaign_and_beat_follows(operator_web, experiments):  # noqa: F811
    form = {
        "name": "weekday",
        "description": "every weekday night",
        "experiments": "exp-3\nexp-1",
        "mode": "parallel",
        "concurrency": "2",
        "schedule_kind": "crontab",
        "crontab": "0 2 * * 1-5",
    }
    response = operator_web.post(reverse("web:campaign-new"), form)
    campaign = Campaign.objects.get(name="weekday")
    assert response.status_code == 302
    assert response["Location"] == reverse("web:campaign", args=[campaign.pk])
    assert campaign.experiments == ["exp-3", "exp-1"] and campaign.mode == "parallel"
    task = PeriodicTask.objects.get(pk=campaign.periodic_task_id)
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("0", "2", "1-5")
    assert AuditEntry.objects.filter(action="campaign.create", source="ui").exists()

    page = operator_web.get(response["Location"]).content.decode()
    assert 'id="run-now"' in page and 'id="pause-campaign"' in page
    assert "02:00" in page and "cron 0 2 * * 1-5" in page  # the schedule in words
    assert re.search(r'id="next-run">\d{4}-\d\d-\d\d 02:00:00 UTC', page)

    edit = operator_web.get(reverse("web:campaign-edit", args=[campaign.pk])).content.decode()
    assert "exp-3\nexp-1" in edit and 'value="0 2 * * 1-5"' in edit
    changed = dict(form, experiments="exp-1, exp-2, exp-3", schedule_kind="interval")
    changed["interval_seconds"] = "600"
    response = operator_web.post(reverse("web:campaign-edit", args=[campaign.pk]), changed)
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.experiments == ["exp-1", "exp-2", "exp-3"]
    task = PeriodicTask.objects.get(pk=campaign.periodic_task_id)
    assert task.interval.every == 600 and task.crontab is None

    bad = dict(changed, interval_seconds="", name="weekday")
    response = operator_web.post(reverse("web:campaign-edit", args=[campaign.pk]), bad)
    assert response.status_code == 400
    assert "required" in field_error(response.content.decode(), "interval_seconds")
    campaign.refresh_from_db()
    assert campaign.interval_seconds == 600


def test_pause_and_resume_flip_the_beat_entry(operator_web, campaign):
    task_id = campaign.periodic_task_id
    assert PeriodicTask.objects.get(pk=task_id).enabled
    operator_web.post(reverse("web:campaign-pause", args=[campaign.pk]))
    campaign.refresh_from_db()
    assert campaign.paused and not PeriodicTask.objects.get(pk=task_id).enabled
    page = operator_web.get(reverse("web:campaign", args=[campaign.pk])).content.decode()
    assert 'id="resume-campaign"' in page and 'id="paused-tag"' in page
    listing = operator_web.get(reverse("web:campaigns")).content.decode()
    assert "paused" in listing

    operator_web.post(reverse("web:campaign-resume", args=[campaign.pk]))
    campaign.refresh_from_db()
    assert not campaign.paused and PeriodicTask.objects.get(pk=task_id).enabled
    actions = list(
        AuditEntry.objects.filter(action__startswith="campaign.p", source="ui").values_list(
            "action", flat=True
        )
    )
    assert actions == ["campaign.pause"]
    assert AuditEntry.objects.filter(action="campaign.resume", source="ui").exists()


def test_next_run_comes_from_the_beat_entry(viewer_web, campaign):
    last = timezone.now() - timedelta(minutes=10)
    PeriodicTask.objects.filter(pk=campaign.periodic_task_id).update(last_run_at=last)
    page = viewer_web.get(reverse("web:campaign", args=[campaign.pk])).content.decode()
    expected = (last + timedelta(minutes=30)).strftime("%Y-%m-%d %H:%M:%S")
    assert f'id="next-run">{expected} UTC' in page


def test_run_now_starts_an_execution_and_a_second_one_is_refused_with_the_reason(
    operator_web, campaign
):
    response = operator_web.post(reverse("web:campaign-trigger", args=[campaign.pk]))
    assert response.status_code == 302
    execution = CampaignRun.objects.get()
    assert execution.trigger == Trigger.MANUAL and execution.status == ExecutionStatus.RUNNING
    again = operator_web.post(reverse("web:campaign-trigger", args=[campaign.pk]))
    assert again.status_code == 409 and "still running" in again.content.decode()

    page = operator_web.get(reverse("web:campaign", args=[campaign.pk])).content.decode()
    assert f'data-execution="{execution.pk}"' in page and "Cancel" in page
    operator_web.post(reverse("web:campaign-run-cancel", args=[execution.pk]))
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.CANCELLED
    assert Run.objects.get().status == "aborted"


def test_the_report_page_charts_scores_and_flags_the_regression(
    viewer_web,
    experiments,  # noqa: F811
    finish_run,  # noqa: F811
):
    campaign = services.create_campaign(
        actor="test", source="system", name="scored", experiments=experiments[:1]
    )
    scores = [(90.0, 86.0, 94.0), (88.0, 84.0, 92.0), (60.0, 55.0, 66.0)]
    base = timezone.now() - timedelta(hours=3)
    runs = []
    for n, (score, low, high) in enumerate(scores):
        execution = services.trigger_campaign(
            campaign, trigger=Trigger.MANUAL, actor="test", source="system"
        )
        run = execution.steps.get().run
        finish_run(run, score=score, score_low=low, score_high=high)
        Run.objects.filter(pk=run.pk).update(finished_at=base + timedelta(hours=n))
        services.advance(execution)
        runs.append(run)

    html = viewer_web.get(reverse("web:campaign-report", args=[campaign.pk])).content.decode()
    assert html.count("<svg") == 1 and 'data-target="demo"' in html
    svg = html[html.index("<svg") : html.index("</svg>")]
    assert svg.count("<circle") >= 3 + 1  # three scores and the regression ring
    assert re.findall(r'data-regression="(\d+)"', svg) == [str(runs[2].pk)]
    assert "regression (1)" in svg  # named in the legend
    table = html[html.index('class="regressions"') :]
    flagged = re.findall(r'<tr class="regression" data-run="(\d+)"', table.split("</table>")[0])
    assert flagged == [str(runs[2].pk)]
    assert "lies wholly below the previous" in html
    assert not EXTERNAL.search(html)


def test_the_report_without_regressions_says_so(viewer_web, experiments, finish_run):  # noqa: F811
    campaign = services.create_campaign(
        actor="test", source="system", name="steady", experiments=experiments[:1]
    )
    for score in (80.0, 78.0):
        execution = services.trigger_campaign(
            campaign, trigger=Trigger.MANUAL, actor="test", source="system"
        )
        finish_run(execution.steps.get().run, score=score, score_low=70.0, score_high=90.0)
        services.advance(execution)
    html = viewer_web.get(reverse("web:campaign-report", args=[campaign.pk])).content.decode()
    assert "data-regression" not in html and 'id="no-regressions-demo"' in html


def test_the_score_chart_marks_each_point_interval_and_regression():
    points = [
        {"run": 1, "experiment": "a", "finished_at": "2026-01-01T10:00:00+00:00", "score": 90,
         "low": 85, "high": 95, "regression": False},
        {"run": 2, "experiment": "a", "finished_at": "2026-01-01T11:00:00+00:00", "score": 50,
         "low": 45, "high": 55, "regression": True, "reason": "below"},
        {"run": 3, "experiment": "b", "finished_at": None, "score": 70, "low": 60, "high": 80,
         "regression": False},
    ]  # fmt: skip
    svg = score_trend_chart("demo", points)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert re.findall(r'data-run="(\d+)"', svg) == ["1", "2"]  # no time: left out
    assert 'data-regression="2"' in svg and "95 % interval" in svg
    assert "no scored runs yet" in score_trend_chart("demo", [])


def test_an_operator_plans_a_game_day_and_bad_input_is_shown_at_the_field(
    operator_web, campaign, viewer
):
    bad = operator_web.post(
        reverse("web:game-day-new"), {"name": "", "campaign": "nope", "observers": "ghost"}
    )
    assert bad.status_code == 400
    html = bad.content.decode()
    assert field_error(html, "name") and "ghost" in field_error(html, "observers")
    assert field_error(html, "campaign")
    assert not GameDay.objects.exists()

    response = operator_web.post(
        reverse("web:game-day-new"),
        {"name": "drill", "campaign": "nightly", "observers": viewer.username},
    )
    game_day = GameDay.objects.get()
    assert response["Location"] == reverse("web:game-day", args=[game_day.pk])
    assert [u.username for u in game_day.observers.all()] == [viewer.username]


def test_an_operator_steps_notes_and_finishes_a_game_day(
    operator_web,
    operator,
    game_day,
    finish_run,  # noqa: F811
):
    url = reverse("web:game-day", args=[game_day.pk])
    page = operator_web.get(url).content.decode()
    assert 'id="next-step">Next step: exp-2' in page

    assert operator_web.post(reverse("web:game-day-next", args=[game_day.pk])).status_code == 302
    game_day.refresh_from_db()
    assert game_day.status == GameDayStatus.RUNNING
    first = game_day.execution.steps.get(position=1).run
    assert first is not None and first.experiment.name == "exp-2"
    page = operator_web.get(url).content.decode()
    assert 'id="step-busy"' in page and 'id="next-step"' not in page
    assert reverse("web:run", args=[first.pk]) in page
    busy = operator_web.post(reverse("web:game-day-next", args=[game_day.pk]))
    assert busy.status_code == 409 and "still" in busy.content.decode()

    empty = operator_web.post(reverse("web:game-day-note", args=[game_day.pk]), {"text": " "})
    assert empty.status_code == 400 and field_error(empty.content.decode(), "text")
    assert not GameDayNote.objects.exists()
    operator_web.post(
        reverse("web:game-day-note", args=[game_day.pk]), {"text": "p95 up, pager quiet"}
    )
    note = GameDayNote.objects.get()
    assert note.author == operator and note.at is not None

    finish_run(first)
    operator_web.post(reverse("web:game-day-next", args=[game_day.pk]))
    assert game_day.execution.steps.get(position=2).run.experiment.name == "exp-1"

    ghost = operator_web.post(
        reverse("web:game-day-observers", args=[game_day.pk]), {"observers": "ghost"}
    )
    assert ghost.status_code == 400 and "ghost" in field_error(ghost.content.decode(), "observers")
    operator_web.post(
        reverse("web:game-day-observers", args=[game_day.pk]),
        {"observers": operator.username},
    )
    assert [u.username for u in game_day.observers.all()] == [operator.username]

    page = operator_web.get(url).content.decode()
    timeline = page[page.index('id="timeline"') :]
    kinds = re.findall(r'<tr class="tl-([a-z_]+)">', timeline)
    assert kinds[:2] == ["created", "started"]
    assert kinds.count("step") == 2 and "note" in kinds and "run_end" in kinds
    assert f"<strong>{operator.username}</strong>: p95 up, pager quiet" in timeline

    operator_web.post(reverse("web:game-day-finish", args=[game_day.pk]))
    game_day.refresh_from_db()
    assert game_day.status == GameDayStatus.FINISHED
    page = operator_web.get(url).content.decode()
    assert 'id="next-step"' not in page and 'id="finish-game-day"' not in page
    assert re.findall(r'<tr class="tl-([a-z_]+)">', page)[-1] == "finished"
    again = operator_web.post(reverse("web:game-day-finish", args=[game_day.pk]))
    assert again.status_code == 409 and "already finished" in again.content.decode()
    actions = set(AuditEntry.objects.filter(source="ui").values_list("action", flat=True))
    assert {"game_day.step", "game_day.note", "game_day.observers", "game_day.finish"} <= actions
