"""Pages of the web UI. Each view checks the role it needs, reads or calls a service
(``experiments.services``, ``analysis.services``, ``analysis.exports``) and renders a
template; none holds business logic of its own, so the UI, the API and the CLI agree on
what starting a run or accepting a suggestion means.

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
from experiments.services import catalog, runs
from experiments.spec import SpecError
from injectors.models import ActiveFault, Agent, FaultState
from scep.permissions import ADMIN, OPERATOR, VIEWER, has_role, user_role
from web.spec_lines import annotate

SOURCE = AuditSource.UI


def role_required(minimum: str) -> Callable:
    """Log in first, then hold ``minimum`` (viewer < operator < admin), else 403."""

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


class _NoAliasDumper(yaml.SafeDumper):
    """Writes repeated mappings out in full: ``&id001``/``*id001`` puzzle readers."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def spec_yaml(spec: dict[str, Any]) -> str:
    """A stored spec as the YAML the editor shows (field order kept, no aliases)."""
    return yaml.dump(spec, Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True)


def _can(request: HttpRequest) -> dict[str, bool]:
    return {
        "operate": has_role(request.user, OPERATOR),
        "administer": has_role(request.user, ADMIN),
    }


# --- dashboard -------------------------------------------------------------------------


def _live_context() -> dict[str, Any]:
    return {
        "running": Run.objects.filter(status__in=RunStatus.active()).select_related(
            "experiment__target"
        ),
        "faults": ActiveFault.objects.filter(state__in=FaultState.open()).select_related(
            "target", "run"
        ),
    }


@role_required(VIEWER)
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    recent = (
        Run.objects.exclude(verdict="").select_related("experiment__target").order_by("-id")[:10]
    )
    context = {
        **_live_context(),
        "kill_switch": KillSwitch.get(),
        "recent": recent,
        "can": _can(request),
    }
    return render(request, "web/dashboard.html", context)


@role_required(VIEWER)
@require_GET
def dashboard_live(request: HttpRequest) -> HttpResponse:
    return render(
        request, "web/partials/dashboard_live.html", {**_live_context(), "can": _can(request)}
    )


@role_required(OPERATOR)
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
    targets = [(t, agents.get(t.agent)) for t in Target.objects.all()]
    return render(request, "web/targets.html", {"targets": targets})


# --- experiments -----------------------------------------------------------------------


@role_required(VIEWER)
@require_GET
def experiment_list(request: HttpRequest) -> HttpResponse:
    experiments = Experiment.objects.select_related("target")
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
    try:
        experiment = catalog.create_experiment(text, actor=request.user, source=SOURCE)
    except SpecError:
        return _editor(request, text, status=400)
    return redirect("web:experiment", pk=experiment.pk)


@role_required(VIEWER)
@require_GET
def experiment_detail(request: HttpRequest, pk: int) -> HttpResponse:
    experiment = get_object_or_404(Experiment.objects.select_related("target"), pk=pk)
    context = {
        "experiment": experiment,
        "yaml": spec_yaml(experiment.spec),
        "runs": experiment.runs.all()[:20],
        "versions": experiment.versions.all()[:10],
        "can": _can(request),
    }
    return render(request, "web/experiment.html", context)


@role_required(OPERATOR)
def experiment_edit(request: HttpRequest, pk: int) -> HttpResponse:
    experiment = get_object_or_404(Experiment, pk=pk)
    if request.method != "POST":
        text = spec_yaml(experiment.spec)
        return render(
            request,
            "web/experiment_edit.html",
            {"text": text, "experiment": experiment, "check": None},
        )
    text = request.POST.get("spec", "")
    try:
        catalog.update_experiment(experiment, text, actor=request.user, source=SOURCE)
    except SpecError:
        return _editor(request, text, experiment=experiment, status=400)
    return redirect("web:experiment", pk=experiment.pk)


@role_required(OPERATOR)
@require_POST
def experiment_check(request: HttpRequest) -> HttpResponse:
    """htmx: validate and preview the editor's text without storing anything."""
    text = request.POST.get("spec", "")
    return render(request, "web/partials/check.html", {"check": _check(text), "text": text})


@role_required(OPERATOR)
@require_POST
def experiment_start(request: HttpRequest, pk: int) -> HttpResponse:
    experiment = get_object_or_404(Experiment, pk=pk)
    try:
        run = runs.start_run(experiment, actor=request.user, source=SOURCE)
    except runs.KillSwitchEngaged as exc:
        return render(request, "web/refused.html", {"message": str(exc)}, status=409)
    return redirect("web:run", pk=run.pk)


# --- runs ------------------------------------------------------------------------------


@role_required(VIEWER)
@require_GET
def run_list(request: HttpRequest) -> HttpResponse:
    recent = Run.objects.select_related("experiment__target")[:100]
    return render(request, "web/runs.html", {"runs": recent})


def _run_context(request: HttpRequest, pk: int) -> dict[str, Any]:
    run = get_object_or_404(Run.objects.select_related("experiment__target"), pk=pk)
    return {
        "run": run,
        "events": run.events.all(),
        "faults": run.faults.all(),
        "can": _can(request),
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
    run = get_object_or_404(Run, pk=pk)
    try:
        runs.abort_run(run, actor=request.user, source=SOURCE, reason="aborted from the web UI")
    except runs.RunNotAbortable as exc:
        return render(request, "web/refused.html", {"message": str(exc)}, status=409)
    return redirect("web:run", pk=run.pk)


@role_required(VIEWER)
@require_GET
def run_report(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(Run.objects.select_related("experiment__target"), pk=pk)
    report = analysis_services.build_report(run, refresh=False)
    action = _suggestion_buttons(request) if has_role(request.user, OPERATOR) else None
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
    run = get_object_or_404(Run.objects.select_related("experiment__target"), pk=pk)
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
    suggestions = Suggestion.objects.select_related("run__experiment", "experiment").order_by(
        "status", "-run_id", "rank"
    )[:100]
    return render(
        request, "web/suggestions.html", {"suggestions": suggestions, "can": _can(request)}
    )


@role_required(OPERATOR)
@require_POST
def suggestion_accept(request: HttpRequest, pk: int) -> HttpResponse:
    """One click: create the suggested experiment and, with ``start=1``, run it."""
    suggestion = get_object_or_404(Suggestion, pk=pk)
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
