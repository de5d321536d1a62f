"""Pages of campaigns and game days.

Like the other pages, these views hold no business logic: input is validated by the
campaigns API's serializers (so a form and a JSON body are judged by the same rules and
name the same field in their errors) and every action goes through
``campaigns.services``, which writes the audit trail and keeps the beat schedule in step.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from campaigns import report as campaign_report
from campaigns import services
from campaigns.api.serializers import (
    CampaignSerializer,
    GameDayNoteSerializer,
    GameDaySerializer,
    GameDayUpdateSerializer,
)
from campaigns.choices import GameDayStatus, Mode, ScheduleKind, Trigger
from campaigns.models import Campaign, CampaignRun, CampaignRunItem, GameDay
from experiments.models import Experiment
from experiments.services import access
from experiments.services.runs import KillSwitchEngaged
from scep.permissions import OPERATOR, VIEWER
from web.campaign_charts import score_trend_chart
from web.views import SOURCE, _can, can_in, require_team_role, role_required, team_object

EXECUTIONS_SHOWN = 20


# --- helpers ---------------------------------------------------------------------------


def _names(text: str) -> list[str]:
    """Names typed one per line or separated by commas, in the order given."""
    return [n.strip() for n in re.split(r"[\n,]+", text or "") if n.strip()]


def _field_errors(errors: Any) -> dict[str, list[str]]:
    """A serializer's errors as ``{field: [messages]}``; nested ones are flattened."""

    def flat(value: Any) -> list[str]:
        if isinstance(value, dict):
            return [m for v in value.values() for m in flat(v)]
        if isinstance(value, list | tuple):
            return [m for v in value for m in flat(v)]
        return [str(value)]

    return {field: flat(messages) for field, messages in dict(errors).items()}


def _when(iso: str | None) -> str:
    """An ISO time of the report data as the pages show times: ``YYYY-MM-DD HH:MM:SS``."""
    return (iso or "")[:19].replace("T", " ")


def _refused(request: HttpRequest, message: str, status: int = 409) -> HttpResponse:
    return render(request, "web/refused.html", {"message": message}, status=status)


def _every(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"every {unit}" if n == 1 else f"every {n} {unit}s"
    return "every second" if seconds == 1 else f"every {seconds} seconds"


def schedule_words(campaign: Campaign) -> str:
    """The schedule as a person would say it ("every 30 minutes", "At 02:00 AM UTC")."""
    if campaign.schedule_kind == ScheduleKind.INTERVAL and campaign.interval_seconds:
        return _every(campaign.interval_seconds)
    if campaign.schedule_kind == ScheduleKind.CRONTAB:
        task = campaign.periodic_task
        if task is not None and task.crontab is not None:
            return f"{task.crontab.human_readable} (cron {campaign.crontab})"
        return f"cron {campaign.crontab} UTC"
    return "manual only"


def next_run_at(campaign: Campaign, now: datetime | None = None) -> datetime | None:
    """When beat will next fire the campaign, or None when paused, manual or unknown.

    Computed from the beat entry itself (its schedule and ``last_run_at``), so it is what
    beat will do, not a second interpretation of the campaign's fields. An interval entry
    beat has never run has no anchor yet: beat fires it one interval after it picks it up.
    """
    task = campaign.periodic_task
    if campaign.paused or task is None or not task.enabled:
        return None
    now = now or timezone.now()
    if task.interval is not None:
        if task.last_run_at is None:
            return None
        step = task.interval.schedule.run_every
        due = task.last_run_at + step
        while due < now:
            due += step
        return due
    if task.crontab is not None:
        # Celery measures the remaining time from its own clock reading, a moment after
        # ``now``; cron fires on whole minutes, so rounding to the minute is exact.
        due = now + task.crontab.schedule.remaining_estimate(now) + timedelta(seconds=30)
        return due.replace(second=0, microsecond=0)
    return None


def _campaign_data(post: QueryDict) -> dict[str, Any]:
    """The campaign form as the API's JSON body (empty optional numbers left out)."""
    data: dict[str, Any] = {
        "name": post.get("name", "").strip(),
        "description": post.get("description", ""),
        "mode": post.get("mode", Mode.SERIAL),
        "schedule_kind": post.get("schedule_kind", ScheduleKind.NONE),
        "crontab": post.get("crontab", "").strip(),
        "experiments": _names(post.get("experiments", "")),
    }
    for field in ("concurrency", "interval_seconds"):
        value = post.get(field, "").strip()
        if value:
            data[field] = value
        elif field == "interval_seconds":
            data[field] = None
    return data


def _form_context(
    request: HttpRequest,
    *,
    campaign: Campaign | None,
    form: dict[str, Any],
    errors: dict[str, list[str]],
) -> dict[str, Any]:
    available = access.scope(Experiment.objects.select_related("target"), request.user)
    if campaign is not None:
        available = available.filter(team=campaign.team_id)
    return {
        "campaign": campaign,
        "form": form,
        "errors": errors,
        "modes": Mode.choices,
        "schedule_kinds": ScheduleKind.choices,
        "available": available.order_by("name"),
    }


def _form_from(campaign: Campaign) -> dict[str, Any]:
    return {
        "name": campaign.name,
        "description": campaign.description,
        "mode": campaign.mode,
        "concurrency": campaign.concurrency,
        "schedule_kind": campaign.schedule_kind,
        "interval_seconds": campaign.interval_seconds or "",
        "crontab": campaign.crontab,
        "experiments": "\n".join(campaign.experiments),
    }


def _posted_form(post: QueryDict) -> dict[str, Any]:
    fields = ("name", "description", "mode", "concurrency", "schedule_kind", "interval_seconds")
    form = {f: post.get(f, "") for f in (*fields, "crontab")}
    form["experiments"] = post.get("experiments", "")
    return form


# --- campaigns -------------------------------------------------------------------------


@role_required(VIEWER)
@require_GET
def campaign_list(request: HttpRequest) -> HttpResponse:
    campaigns = (
        access.scope(Campaign.objects, request.user)
        .select_related("periodic_task__interval", "periodic_task__crontab")
        .prefetch_related("items__experiment")
    )
    now = timezone.now()
    rows = [
        {
            "campaign": c,
            "schedule": schedule_words(c),
            "next_run": next_run_at(c, now),
            "last": c.runs.order_by("-created_at", "-id").first(),
        }
        for c in campaigns
    ]
    return render(request, "web/campaigns/list.html", {"rows": rows, "can": _can(request)})


@role_required(OPERATOR)
def campaign_new(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        form = {"mode": Mode.SERIAL, "concurrency": 2, "schedule_kind": ScheduleKind.NONE}
        context = _form_context(request, campaign=None, form=form, errors={})
        return render(request, "web/campaigns/edit.html", context)
    serializer = CampaignSerializer(
        data=_campaign_data(request.POST), context={"user": request.user}
    )
    if not serializer.is_valid():
        context = _form_context(
            request,
            campaign=None,
            form=_posted_form(request.POST),
            errors=_field_errors(serializer.errors),
        )
        return render(request, "web/campaigns/edit.html", context, status=400)
    data = dict(serializer.validated_data)
    team = data.get("team")
    if team is not None:
        require_team_role(request, team.pk, OPERATOR, "create a campaign there")
    campaign = services.create_campaign(
        actor=request.user,
        source=SOURCE,
        name=data.pop("name"),
        experiments=data.pop("experiments"),
        **data,
    )
    return redirect("web:campaign", pk=campaign.pk)


@role_required(OPERATOR)
def campaign_edit(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = team_object(request, Campaign.objects, pk, OPERATOR, "edit this campaign")
    if request.method != "POST":
        context = _form_context(request, campaign=campaign, form=_form_from(campaign), errors={})
        return render(request, "web/campaigns/edit.html", context)
    serializer = CampaignSerializer(
        instance=campaign, data=_campaign_data(request.POST), context={"user": request.user}
    )
    if not serializer.is_valid():
        context = _form_context(
            request,
            campaign=campaign,
            form=_posted_form(request.POST),
            errors=_field_errors(serializer.errors),
        )
        return render(request, "web/campaigns/edit.html", context, status=400)
    services.update_campaign(
        campaign, actor=request.user, source=SOURCE, **serializer.validated_data
    )
    return redirect("web:campaign", pk=campaign.pk)


def _executions(queryset: Any) -> Any:
    steps = CampaignRunItem.objects.select_related("experiment", "run").order_by("position")
    return queryset.prefetch_related(Prefetch("steps", queryset=steps))


@role_required(VIEWER)
@require_GET
def campaign_detail(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = team_object(
        request,
        Campaign.objects.select_related(
            "periodic_task__interval", "periodic_task__crontab", "created_by"
        ),
        pk,
    )
    executions = _executions(campaign.runs.order_by("-created_at", "-id"))[:EXECUTIONS_SHOWN]
    context = {
        "campaign": campaign,
        "items": campaign.items.select_related("experiment__target"),
        "schedule": schedule_words(campaign),
        "next_run": next_run_at(campaign),
        "task": campaign.periodic_task,
        "executions": executions,
        "total_executions": campaign.runs.count(),
        "game_days": campaign.game_days.all()[:10],
        "can": can_in(request, campaign.team_id),
    }
    return render(request, "web/campaigns/detail.html", context)


@role_required(OPERATOR)
@require_POST
def campaign_pause(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = team_object(request, Campaign.objects, pk, OPERATOR, "pause this campaign")
    services.pause_campaign(campaign, actor=request.user, source=SOURCE)
    return redirect("web:campaign", pk=pk)


@role_required(OPERATOR)
@require_POST
def campaign_resume(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = team_object(request, Campaign.objects, pk, OPERATOR, "resume this campaign")
    services.resume_campaign(campaign, actor=request.user, source=SOURCE)
    return redirect("web:campaign", pk=pk)


@role_required(OPERATOR)
@require_POST
def campaign_trigger(request: HttpRequest, pk: int) -> HttpResponse:
    """Run now: refused (409, with the reason) while paused, running or kill-switched."""
    campaign = team_object(request, Campaign.objects, pk, OPERATOR, "run this campaign")
    try:
        services.trigger_campaign(
            campaign, trigger=Trigger.MANUAL, actor=request.user, source=SOURCE
        )
    except services.CampaignStateError as exc:
        return _refused(request, str(exc))
    return redirect("web:campaign", pk=pk)


@role_required(OPERATOR)
@require_POST
def execution_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    execution = team_object(request, CampaignRun.objects, pk, OPERATOR, "cancel this execution")
    try:
        services.cancel_execution(
            execution,
            actor=request.user,
            source=SOURCE,
            reason=request.POST.get("reason", "")[:500],
        )
    except services.CampaignStateError as exc:
        return _refused(request, str(exc))
    return redirect("web:campaign", pk=execution.campaign_id)


@role_required(VIEWER)
@require_GET
def campaign_report_page(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = team_object(request, Campaign.objects, pk)
    data = campaign_report.campaign_report(campaign)
    targets = []
    for target in data["targets"]:
        points = [{**p, "when": _when(p["finished_at"])} for p in target["points"]]
        targets.append(
            {
                **target,
                "points": points,
                "chart": score_trend_chart(target["target"], target["points"]),
                "flagged": [p for p in points if p["regression"]],
            }
        )
    executions = [
        {
            **e,
            "when": _when(e["created_at"]),
            "counts": ", ".join(f"{v} {k}" for k, v in (e["summary"] or {}).items() if v),
        }
        for e in data["executions"]
    ]
    context = {"campaign": campaign, "targets": targets, "executions": executions}
    return render(request, "web/campaigns/report.html", context)


# --- game days -------------------------------------------------------------------------


def _game_day_form_context(
    request: HttpRequest, form: dict[str, Any], errors: dict[str, list[str]]
) -> dict[str, Any]:
    campaigns = access.scope(Campaign.objects, request.user).order_by("name")
    return {"form": form, "errors": errors, "campaigns": campaigns}


def _game_days(request: HttpRequest) -> Any:
    return access.scope(GameDay.objects, request.user)


@role_required(VIEWER)
@require_GET
def game_day_list(request: HttpRequest) -> HttpResponse:
    game_days = (
        _game_days(request).select_related("campaign", "created_by").prefetch_related("observers")
    )
    context = {
        "game_days": game_days[:100],
        "can": _can(request),
        **_game_day_form_context(request, {}, {}),
    }
    return render(request, "web/campaigns/game_days.html", context)


@role_required(OPERATOR)
@require_POST
def game_day_new(request: HttpRequest) -> HttpResponse:
    post = request.POST
    data = {
        "name": post.get("name", "").strip(),
        "campaign": post.get("campaign", ""),
        "observers": _names(post.get("observers", "")),
    }
    serializer = GameDaySerializer(data=data, context={"user": request.user})
    if not serializer.is_valid():
        form = {f: post.get(f, "") for f in ("name", "campaign", "observers")}
        context = {
            "game_days": _game_days(request).select_related("campaign")[:100],
            "can": _can(request),
            **_game_day_form_context(request, form, _field_errors(serializer.errors)),
        }
        return render(request, "web/campaigns/game_days.html", context, status=400)
    valid = serializer.validated_data
    require_team_role(
        request, valid["campaign"].team_id, OPERATOR, "plan a game day on this campaign"
    )
    game_day = services.create_game_day(
        campaign=valid["campaign"],
        name=valid["name"],
        observers=valid.get("observers", []),
        actor=request.user,
        source=SOURCE,
    )
    return redirect("web:game-day", pk=game_day.pk)


def _game_day_context(request: HttpRequest, game_day: GameDay) -> dict[str, Any]:
    if game_day.execution is not None:
        steps = [
            {"position": s.position, "experiment": s.experiment, "run": s.run, "error": s.error}
            for s in game_day.execution.steps.select_related("experiment", "run")
        ]
    else:
        steps = [
            {"position": i.position, "experiment": i.experiment, "run": None, "error": ""}
            for i in game_day.campaign.items.select_related("experiment")
        ]
    busy = next((s for s in steps if s["run"] is not None and not s["run"].is_terminal), None)
    pending = [s for s in steps if s["run"] is None]
    finished = game_day.status == GameDayStatus.FINISHED
    return {
        "game_day": game_day,
        "steps": steps,
        "next": pending[0] if pending and not finished else None,
        "busy": busy,
        "finished": finished,
        "observers": sorted(u.username for u in game_day.observers.all()),
        "notes": game_day.notes.select_related("author"),
        "timeline": campaign_report.game_day_timeline(game_day)["entries"],
        "can": can_in(request, game_day.campaign.team_id),
        "errors": {},
        "note_text": "",
        "observers_text": "",
    }


def _get_game_day(request: HttpRequest, pk: int, minimum: str = VIEWER) -> GameDay:
    queryset = GameDay.objects.select_related("campaign", "execution", "created_by")
    return team_object(request, queryset, pk, minimum, "act on this game day")


@role_required(VIEWER)
@require_GET
def game_day_detail(request: HttpRequest, pk: int) -> HttpResponse:
    game_day = _get_game_day(request, pk)
    context = _game_day_context(request, game_day)
    context["observers_text"] = ", ".join(context["observers"])
    return render(request, "web/campaigns/game_day.html", context)


@role_required(OPERATOR)
@require_POST
def game_day_next_step(request: HttpRequest, pk: int) -> HttpResponse:
    """Start the next experiment; refused while the previous run is still going."""
    game_day = _get_game_day(request, pk, OPERATOR)
    try:
        services.next_step(game_day, actor=request.user, source=SOURCE)
    except (services.CampaignStateError, KillSwitchEngaged) as exc:
        return _refused(request, str(exc))
    return redirect("web:game-day", pk=pk)


@role_required(OPERATOR)
@require_POST
def game_day_note(request: HttpRequest, pk: int) -> HttpResponse:
    game_day = _get_game_day(request, pk, OPERATOR)
    serializer = GameDayNoteSerializer(data={"text": request.POST.get("text", "")})
    if not serializer.is_valid():
        context = _game_day_context(request, game_day)
        context["observers_text"] = ", ".join(context["observers"])
        context["errors"] = _field_errors(serializer.errors)
        context["note_text"] = request.POST.get("text", "")
        return render(request, "web/campaigns/game_day.html", context, status=400)
    services.add_note(
        game_day, text=serializer.validated_data["text"], actor=request.user, source=SOURCE
    )
    return redirect("web:game-day", pk=pk)


@role_required(OPERATOR)
@require_POST
def game_day_observers(request: HttpRequest, pk: int) -> HttpResponse:
    game_day = _get_game_day(request, pk, OPERATOR)
    text = request.POST.get("observers", "")
    serializer = GameDayUpdateSerializer(
        data={"observers": _names(text)}, context={"campaign": game_day.campaign}
    )
    if not serializer.is_valid():
        context = _game_day_context(request, game_day)
        context["errors"] = _field_errors(serializer.errors)
        context["observers_text"] = text
        return render(request, "web/campaigns/game_day.html", context, status=400)
    services.set_observers(
        game_day, serializer.validated_data["observers"], actor=request.user, source=SOURCE
    )
    return redirect("web:game-day", pk=pk)


@role_required(OPERATOR)
@require_POST
def game_day_finish(request: HttpRequest, pk: int) -> HttpResponse:
    game_day = _get_game_day(request, pk, OPERATOR)
    try:
        services.finish_game_day(game_day, actor=request.user, source=SOURCE)
    except services.CampaignStateError as exc:
        return _refused(request, str(exc))
    return redirect("web:game-day", pk=pk)


__all__ = [
    "campaign_detail",
    "campaign_edit",
    "campaign_list",
    "campaign_new",
    "campaign_pause",
    "campaign_report_page",
    "campaign_resume",
    "campaign_trigger",
    "execution_cancel",
    "game_day_detail",
    "game_day_finish",
    "game_day_list",
    "game_day_new",
    "game_day_next_step",
    "game_day_note",
    "game_day_observers",
    "next_run_at",
    "schedule_words",
]
