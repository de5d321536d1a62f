"""Pages of the web UI. Each view checks the role it needs, reads or calls a service
(``experiments.services``, ``analysis.services``, ``analysis.exports``) and renders a
template; none holds business logic of its own, so the UI, the API and the CLI agree on
what starting a run or accepting a suggestion means.

Teams: every page lists only the objects of the user's teams (``access.scope``), another
team's object is a 404, and every action needs the role *in that object's team*
(``team_object``); :func:`role_required` only asks that the user holds the role in some
team. The kill switch is platform-wide and keeps needing the global role
(:func:`platform_role_required`).

Live parts (the dashboard's running runs, a run's timeline) are partial templates that
htmx polls; a finished run's partial stops asking.
"""

from __future__ import annotations

import functools
import mimetypes
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.staticfiles import finders
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from analysis import services as analysis_services
from analysis.exports import FORMATS, UnknownFormat, export_run
from analysis.models import Suggestion, SuggestionStatus
from analysis.report import render_body
from audit.models import AuditSource
from experiments.choices import RunStatus
from experiments.models import Experiment, KillSwitch, Run, Target
from experiments.services import access, catalog, runs
from experiments.spec import SpecError, load_spec_text
from injectors.models import ActiveFault, Agent, FaultState
from scep.permissions import ADMIN, OPERATOR, ROLES, VIEWER, has_role, user_role
from web.spec_lines import annotate

SOURCE = AuditSource.UI


def _at_least(role: str | None, minimum: str) -> bool:
    return role is not None and ROLES.index(role) >= ROLES.index(minimum)


def role_required(minimum: str) -> Callable:
    """Log in first, then hold ``minimum`` in at least one team, else 403.

    The coarse gate only: a view acting on an object then asks for the role in that
    object's team (:func:`team_object`), as the API's object permission does.
    """

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        @login_required
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            held = access.highest_role(request.user)
            if not _at_least(held, minimum):
                raise PermissionDenied(
                    f"This needs the {minimum!r} role; you have {held or 'no role'!r}."
                )
            return view(request, *args, **kwargs)

        return wrapped

    return decorate


def platform_role_required(minimum: str) -> Callable:
    """Log in first, then hold ``minimum`` as a global role (platform-wide actions)."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        @login_required
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not has_role(request.user, minimum):
                raise PermissionDenied(
                    f"This needs the {minimum!r} role; you have "
                    f"{user_role(request.user) or 'no role'!r}."
                )
            return view(request, *args, **kwargs)

        return wrapped

    return decorate


def require_team_role(request: HttpRequest, team_id: int | None, minimum: str, what: str) -> None:
    """``access.require_team_role`` as a page answers it: Django's 403, not DRF's."""
    from rest_framework.exceptions import PermissionDenied as ApiPermissionDenied

    try:
        access.require_team_role(request.user, team_id, minimum, what=what)
    except ApiPermissionDenied as exc:
        raise PermissionDenied(str(exc.detail)) from None


def team_object(
    request: HttpRequest, queryset: Any, pk: int, minimum: str = VIEWER, what: str = ""
) -> Any:
    """The object if it is in one of the user's teams (else 404) and the user holds
    ``minimum`` in *its* team (else 403)."""
    obj = get_object_or_404(access.scope(queryset, request.user), pk=pk)
    if minimum != VIEWER:
        require_team_role(request, access.team_of(obj), minimum, what or "do this")
    return obj


def can_in(request: HttpRequest, team_id: int | None) -> dict[str, bool]:
    """What the user may do with an object of this team (the buttons a page shows)."""
    held = access.team_role(request.user, team_id)
    return {"operate": _at_least(held, OPERATOR), "administer": _at_least(held, ADMIN)}


class _NoAliasDumper(yaml.SafeDumper):
    """Writes repeated mappings out in full: ``&id001``/``*id001`` puzzle readers."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def spec_yaml(spec: dict[str, Any]) -> str:
    """A stored spec as the YAML the editor shows (field order kept, no aliases)."""
    return yaml.dump(spec, Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True)


def _can(request: HttpRequest) -> dict[str, bool]:
    """Creating something (an experiment, a campaign): operator in some team."""
    held = access.highest_role(request.user)
    return {"operate": _at_least(held, OPERATOR), "administer": _at_least(held, ADMIN)}


def _can_platform(request: HttpRequest) -> dict[str, bool]:
    """The kill switch: global roles, as in the API."""
    return {
        "operate": has_role(request.user, OPERATOR),
        "administer": has_role(request.user, ADMIN),
    }


# --- dashboard -------------------------------------------------------------------------


def _live_context(request: HttpRequest) -> dict[str, Any]:
    user = request.user
    return {
        "running": access.scope(Run.objects.filter(status__in=RunStatus.active()), user)
        .select_related("experiment__target")
        .order_by("-id"),
        "faults": access.scope(
            ActiveFault.objects.filter(state__in=FaultState.open()), user
        ).select_related("target", "run"),
    }


@role_required(VIEWER)
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    recent = (
        access.scope(Run.objects.exclude(verdict=""), request.user)
        .select_related("experiment__target")
        .order_by("-id")[:10]
    )
    context = {
        **_live_context(request),
        "kill_switch": KillSwitch.get(),
        "recent": recent,
        "can": _can_platform(request),
    }
    return render(request, "web/dashboard.html", context)


@role_required(VIEWER)
@require_GET
def dashboard_live(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "web/partials/dashboard_live.html",
        {**_live_context(request), "can": _can_platform(request)},
    )


@platform_role_required(OPERATOR)
@require_POST
def kill_switch(request: HttpRequest) -> HttpResponse:
    """Engage (operator) or release (admin) the global kill switch."""
    if request.POST.get("action") == "engage":
        runs.engage_kill_switch(
            actor=request.user, source=SOURCE, reason=request.POST.get("reason", "")[:500]
        )
    elif request.POST.get("action") == "release":
        if not has_role(request.user, ADMIN):
            raise PermissionDenied("Releasing the kill switch needs the 'admin' role.")
        runs.release_kill_switch(actor=request.user, source=SOURCE)
    else:
        return HttpResponse("action: expected engage or release", status=400)
    return redirect("web:dashboard")


# --- targets ---------------------------------------------------------------------------


@role_required(VIEWER)
@require_GET
def target_list(request: HttpRequest) -> HttpResponse:
    agents = {a.name: a for a in Agent.objects.all()}
    targets = [(t, agents.get(t.agent)) for t in access.scope(Target.objects.all(), request.user)]
    return render(request, "web/targets.html", {"targets": targets})


# --- experiments -----------------------------------------------------------------------


@role_required(VIEWER)
@require_GET
def experiment_list(request: HttpRequest) -> HttpResponse:
    experiments = access.scope(Experiment.objects.select_related("target"), request.user)
    return render(
        request, "web/experiments.html", {"experiments": experiments, "can": _can(request)}
    )


def _check(text: str) -> dict[str, Any]:
    """Validate and dry-run a spec text; the editor's feedback as template context."""
    try:
        preview = catalog.preview_experiment(text)
    except SpecError as exc:
        errors = [(e.path, e.reason) for e in exc.errors]
        lines, unplaced = annotate(text, errors)
        return {"valid": False, "lines": lines, "unplaced": unplaced, "errors": errors}
    return {"valid": True, "dry_run": preview["dry_run"], "spec": preview["spec"]}


def _editor(
    request: HttpRequest, text: str, *, experiment: Experiment | None = None, status: int = 200
) -> HttpResponse:
    context = {"text": text, "experiment": experiment, "check": None}
    if request.method == "POST":
        context["check"] = _check(text)
    return render(request, "web/experiment_edit.html", context, status=status)


def _examples() -> dict[str, Path]:
    """The example specs shipped in ``experiments/examples``, offered as starting points."""
    folder = Path(settings.BASE_DIR) / "experiments" / "examples"
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


@role_required(OPERATOR)
def experiment_new(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        examples = _examples()
        chosen = examples.get(request.GET.get("example", ""))
        text = chosen.read_text() if chosen else ""
        context = {"text": text, "check": None, "examples": list(examples)}
        return render(request, "web/experiment_edit.html", context)
    text = request.POST.get("spec", "")
    _require_target_team(request, text)
    try:
        experiment = catalog.create_experiment(text, actor=request.user, source=SOURCE)
    except SpecError:
        return _editor(request, text, status=400)
    return redirect("web:experiment", pk=experiment.pk)


def _require_target_team(request: HttpRequest, text: str) -> None:
    """Experiments go where their target is: the operator role is needed *there* (as in
    the API). A text that does not parse is left to the spec validation's answer."""
    try:
        data = load_spec_text(text)
    except SpecError:
        return
    name = data.get("target") if isinstance(data, dict) else None
    if not isinstance(name, str):
        return
    team_id = Target.objects.filter(name=name).values_list("team_id", flat=True).first()
    if team_id is not None:
        require_team_role(request, team_id, OPERATOR, f"experiment on target {name!r}")


@role_required(VIEWER)
@require_GET
def experiment_detail(request: HttpRequest, pk: int) -> HttpResponse:
    experiment = team_object(request, Experiment.objects.select_related("target"), pk)
    context = {
        "experiment": experiment,
        "yaml": spec_yaml(experiment.spec),
        "runs": experiment.runs.all()[:20],
        "versions": experiment.versions.all()[:10],
        "can": can_in(request, experiment.team_id),
    }
    return render(request, "web/experiment.html", context)


@role_required(OPERATOR)
def experiment_edit(request: HttpRequest, pk: int) -> HttpResponse:
    experiment = team_object(request, Experiment.objects, pk, OPERATOR, "edit this experiment")
    if request.method != "POST":
        text = spec_yaml(experiment.spec)
        return render(
            request,
            "web/experiment_edit.html",
            {"text": text, "experiment": experiment, "check": None},
        )
    text = request.POST.get("spec", "")
    _require_target_team(request, text)
    try:
        catalog.update_experiment(experiment, text, actor=request.user, source=SOURCE)
    except SpecError:
        return _editor(request, text, experiment=experiment, status=400)
    return redirect("web:experiment", pk=experiment.pk)


@role_required(OPERATOR)
@require_POST
def experiment_check(request: HttpRequest) -> HttpResponse:
    """htmx: validate and preview the editor's text without storing anything (the dry
    run reads the target, so the operator role is needed in the target's team)."""
    text = request.POST.get("spec", "")
    _require_target_team(request, text)
    return render(request, "web/partials/check.html", {"check": _check(text), "text": text})


@role_required(OPERATOR)
@require_POST
def experiment_start(request: HttpRequest, pk: int) -> HttpResponse:
    experiment = team_object(request, Experiment.objects, pk, OPERATOR, "run this experiment")
    try:
        run = runs.start_run(experiment, actor=request.user, source=SOURCE)
    except runs.KillSwitchEngaged as exc:
        return render(request, "web/refused.html", {"message": str(exc)}, status=409)
    return redirect("web:run", pk=run.pk)


# --- runs ------------------------------------------------------------------------------


@role_required(VIEWER)
@require_GET
def run_list(request: HttpRequest) -> HttpResponse:
    recent = access.scope(Run.objects.select_related("experiment__target"), request.user)[:100]
    return render(request, "web/runs.html", {"runs": recent})


def _run_context(request: HttpRequest, pk: int) -> dict[str, Any]:
    run = team_object(request, Run.objects.select_related("experiment__target"), pk)
    return {
        "run": run,
        "events": run.events.all(),
        "faults": run.faults.all(),
        "can": can_in(request, run.experiment.team_id),
        "phases": [
            "queued",
            "preflight",
            "baseline",
            "during",
            "recovery",
            "analysing",
            "completed",
        ],
    }


@role_required(VIEWER)
@require_GET
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, "web/run.html", _run_context(request, pk))


@role_required(VIEWER)
@require_GET
def run_live(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, "web/partials/run_live.html", _run_context(request, pk))


@role_required(OPERATOR)
@require_POST
def run_abort(request: HttpRequest, pk: int) -> HttpResponse:
    run = team_object(request, Run.objects, pk, OPERATOR, "abort this run")
    try:
        runs.abort_run(run, actor=request.user, source=SOURCE, reason="aborted from the web UI")
    except runs.RunNotAbortable as exc:
        return render(request, "web/refused.html", {"message": str(exc)}, status=409)
    return redirect("web:run", pk=run.pk)


@role_required(VIEWER)
@require_GET
def run_report(request: HttpRequest, pk: int) -> HttpResponse:
    run = team_object(request, Run.objects.select_related("experiment__target"), pk)
    report = analysis_services.build_report(run, refresh=False)
    operate = can_in(request, run.experiment.team_id)["operate"]
    action = _suggestion_buttons(request) if operate else None
    context = {
        "run": run,
        "body": render_body(report, suggestion_action=action),
        "formats": list(FORMATS),
    }
    return render(request, "web/report.html", context)


def _suggestion_buttons(request: HttpRequest) -> Callable[[Any], str]:
    token = escape(get_token(request))

    def buttons(item: Any) -> str:
        if item.get("status") != SuggestionStatus.OPEN:
            return f' <span class="tag">{escape(str(item.get("status", "")))}</span>'
        url = escape(reverse("web:suggestion-accept", args=[item["id"]]))
        return (
            f'<form method="post" action="{url}" class="inline">'
            f'<input type="hidden" name="csrfmiddlewaretoken" value="{token}">'
            '<button name="start" value="0" class="btn">Accept</button> '
            '<button name="start" value="1" class="btn primary">Accept and start</button>'
            "</form>"
        )

    return buttons


@role_required(VIEWER)
@require_GET
def run_export(request: HttpRequest, pk: int, fmt: str) -> HttpResponse:
    run = team_object(request, Run.objects.select_related("experiment__target"), pk)
    try:
        export = export_run(run, fmt)
    except UnknownFormat as exc:
        raise Http404(str(exc)) from None
    response = HttpResponse(export.content, content_type=export.content_type)
    response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
    return response


# --- suggestions -----------------------------------------------------------------------


@role_required(VIEWER)
@require_GET
def suggestion_list(request: HttpRequest) -> HttpResponse:
    suggestions = list(
        access.scope(Suggestion.objects, request.user)
        .select_related("run__experiment", "experiment")
        .order_by("status", "-run_id", "rank")[:100]
    )
    for suggestion in suggestions:
        suggestion.can_accept = can_in(request, suggestion.run.experiment.team_id)["operate"]
    return render(
        request, "web/suggestions.html", {"suggestions": suggestions, "can": _can(request)}
    )


@role_required(OPERATOR)
@require_POST
def suggestion_accept(request: HttpRequest, pk: int) -> HttpResponse:
    """One click: create the suggested experiment and, with ``start=1``, run it."""
    suggestion = team_object(request, Suggestion.objects, pk, OPERATOR, "accept this suggestion")
    try:
        experiment = analysis_services.accept_suggestion(
            suggestion, actor=request.user, source=SOURCE
        )
    except SpecError as exc:
        return render(request, "web/refused.html", {"message": str(exc)}, status=400)
    if request.POST.get("start") == "1":
        try:
            run = runs.start_run(experiment, actor=request.user, source=SOURCE)
        except runs.KillSwitchEngaged as exc:
            return render(request, "web/refused.html", {"message": str(exc)}, status=409)
        return redirect("web:run", pk=run.pk)
    return redirect("web:experiment", pk=experiment.pk)


# --- assets ----------------------------------------------------------------------------


@require_GET
def static_asset(request: HttpRequest, path: str) -> HttpResponse:
    """Serve the UI's own static files when no web server does (``runserver`` without
    DEBUG, a single-process install): assets are always local, never from a CDN."""
    found = finders.find(path)
    if not found or not isinstance(found, str):
        raise Http404("no such asset")
    content_type, _ = mimetypes.guess_type(found)
    return FileResponse(open(found, "rb"), content_type=content_type)
