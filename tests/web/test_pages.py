"""The web UI's pages through Django's test client: who sees what, who may post, the
editor's inline validation, starting, aborting, accepting, the kill switch, CSRF."""

from __future__ import annotations

import re

import pytest
import yaml
from django.test import Client
from django.urls import reverse

from analysis.models import Suggestion, SuggestionStatus
from experiments.choices import RunStatus
from experiments.models import Experiment, KillSwitch, Run

pytestmark = pytest.mark.django_db

EXTERNAL = re.compile(r'(src|href)="(https?:)?//', re.I)


def page_urls(run, experiment) -> list[str]:
    return [
        reverse("web:dashboard"),
        reverse("web:dashboard-live"),
        reverse("web:targets"),
        reverse("web:experiments"),
        reverse("web:experiment", args=[experiment.pk]),
        reverse("web:runs"),
        reverse("web:run", args=[run.pk]),
        reverse("web:run-live", args=[run.pk]),
        reverse("web:report", args=[run.pk]),
        reverse("web:suggestions"),
    ]


def test_anonymous_visitors_are_sent_to_the_login_page(experiment, judged):
    client = Client()
    for url in page_urls(judged, experiment):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("web:login")), url


def test_logging_in_with_a_password_leads_to_the_dashboard(viewer):
    viewer.set_password("correct horse")
    viewer.save()
    client = Client()
    assert client.get(reverse("web:login")).status_code == 200
    bad = client.post(reverse("web:login"), {"username": viewer.username, "password": "nope"})
    assert bad.status_code == 200 and "did not match" in bad.content.decode()
    good = client.post(
        reverse("web:login"), {"username": viewer.username, "password": "correct horse"}
    )
    assert good.status_code == 302 and good["Location"] == reverse("web:dashboard")
    assert viewer.username in client.get(reverse("web:dashboard")).content.decode()


def test_a_viewer_reads_every_page_and_sees_no_start_abort_or_accept_buttons(
    viewer_web, experiment, judged
):
    running = Run.objects.create(
        experiment=experiment,
        experiment_version=1,
        spec=experiment.spec,
        status=RunStatus.DURING,
    )
    for url in [*page_urls(judged, experiment), reverse("web:run", args=[running.pk])]:
        response = viewer_web.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert not EXTERNAL.search(html), f"{url} loads something from another host"
        for button in ('id="start-run"', 'id="abort-run"', "Accept and start", "Engage kill"):
            assert button not in html, f"{url} shows {button} to a viewer"
        assert 'id="new-experiment"' not in html


def test_a_viewer_cannot_post_anything(viewer_web, experiment, judged):
    suggestion = Suggestion.objects.create(
        run=judged, kind="repeat", title="again", spec=experiment.spec
    )
    posts = [
        (reverse("web:experiment-start", args=[experiment.pk]), {}),
        (reverse("web:experiment-new"), {"spec": yaml.safe_dump(experiment.spec)}),
        (reverse("web:experiment-edit", args=[experiment.pk]), {"spec": "name: x"}),
        (reverse("web:experiment-check"), {"spec": "name: x"}),
        (reverse("web:run-abort", args=[judged.pk]), {}),
        (reverse("web:suggestion-accept", args=[suggestion.pk]), {"start": "1"}),
        (reverse("web:kill-switch"), {"action": "engage"}),
    ]
    for url, data in posts:
        response = viewer_web.post(url, data)
        assert response.status_code == 403, url
        assert "operator" in response.content.decode()
    assert Run.objects.count() == 1
    assert not KillSwitch.get().engaged
    suggestion.refresh_from_db()
    assert suggestion.status == SuggestionStatus.OPEN


def test_a_user_without_a_role_is_refused(norole_web):
    response = norole_web.get(reverse("web:dashboard"))
    assert response.status_code == 403
    assert "no role" in response.content.decode()


BROKEN = """\
name: web-latency
target: demo
fault:
  type: network.latency
  params:
    proxy: downstream
    latency_ms: -5
duration: 20s
baseline: 10s
recovery: 10s
metrics:
  - name: latency
    better: lowest
    unit: s
    probe: {url: "http://127.0.0.1:19101/api/items"}
    measure: latency_p95
"""


def test_the_editor_flags_each_error_at_the_line_of_its_field(operator_web, target):
    response = operator_web.post(reverse("web:experiment-check"), {"spec": BROKEN})
    assert response.status_code == 200
    html = response.content.decode()
    flagged = dict(re.findall(r'data-line="(\d+)">line \d+: ([^<]+)<', html))
    assert flagged["7"].startswith("fault.params.latency_ms:")
    assert flagged["13"].startswith("metrics.0.better:")
    assert len(flagged) == 2

    fixed = BROKEN.replace("latency_ms: -5", "latency_ms: 300").replace("lowest", "lower")
    ok = operator_web.post(reverse("web:experiment-check"), {"spec": fixed}).content.decode()
    assert 'id="check-ok"' in ok and "300" in ok and "field-error" not in ok
    assert not Experiment.objects.exists()  # checking stores nothing


def test_a_yaml_syntax_error_is_shown_at_its_line(operator_web, target):
    text = "name: x\ntarget: demo\nfault: [1,\n"
    html = operator_web.post(reverse("web:experiment-check"), {"spec": text}).content.decode()
    assert "not valid YAML" in html and 'class="field-error"' in html


def test_saving_an_invalid_spec_answers_400_with_the_errors_inline(operator_web, target):
    response = operator_web.post(reverse("web:experiment-new"), {"spec": BROKEN})
    assert response.status_code == 400
    html = response.content.decode()
    assert 'aria-invalid="true"' in html and "fault.params.latency_ms" in html
    assert "latency_ms: -5" in html  # the text is kept for fixing
    assert not Experiment.objects.exists()


def test_an_operator_creates_edits_and_starts_an_experiment(operator_web, target):
    fixed = BROKEN.replace("latency_ms: -5", "latency_ms: 300").replace("lowest", "lower")
    response = operator_web.post(reverse("web:experiment-new"), {"spec": fixed})
    experiment = Experiment.objects.get(name="web-latency")
    assert response["Location"] == reverse("web:experiment", args=[experiment.pk])
    page = operator_web.get(response["Location"]).content.decode()
    assert 'id="start-run"' in page and "latency_ms: 300" in page

    edited = fixed.replace("latency_ms: 300", "latency_ms: 200")
    operator_web.post(reverse("web:experiment-edit", args=[experiment.pk]), {"spec": edited})
    experiment.refresh_from_db()
    assert experiment.version == 2 and experiment.spec["fault"]["params"]["latency_ms"] == 200

    started = operator_web.post(reverse("web:experiment-start", args=[experiment.pk]))
    run = Run.objects.get(experiment=experiment)
    assert started["Location"] == reverse("web:run", args=[run.pk])
    run_page = operator_web.get(started["Location"]).content.decode()
    assert 'id="abort-run"' in run_page and "run queued" in run_page
    assert 'hx-trigger="every 1s"' in run_page  # live while not finished

    operator_web.post(reverse("web:run-abort", args=[run.pk]))
    run.refresh_from_db()
    assert run.status == RunStatus.ABORTED
    finished = operator_web.get(reverse("web:run-live", args=[run.pk])).content.decode()
    assert "hx-trigger" not in finished and 'id="abort-run"' not in finished
    again = operator_web.post(reverse("web:run-abort", args=[run.pk]))
    assert again.status_code == 409 and "already aborted" in again.content.decode()


def test_the_dashboard_shows_running_runs_with_their_phase_and_open_faults(viewer_web, experiment):
    Run.objects.create(
        experiment=experiment, experiment_version=1, spec=experiment.spec, status="baseline"
    )
    html = viewer_web.get(reverse("web:dashboard-live")).content.decode()
    assert "phase-baseline" in html and experiment.name in html
    assert "kill-switch" not in html  # not polled: a reason being typed would be wiped
    page = viewer_web.get(reverse("web:dashboard")).content.decode()
    assert 'id="kill-switch-state">released' in page and "phase-baseline" in page


def test_the_kill_switch_is_engaged_by_operators_and_released_by_admins(operator_web, admin_web):
    operator_web.post(reverse("web:kill-switch"), {"action": "engage", "reason": "game day"})
    assert KillSwitch.get().engaged
    html = operator_web.get(reverse("web:dashboard")).content.decode()
    assert "ENGAGED" in html and "game day" in html
    assert operator_web.post(reverse("web:kill-switch"), {"action": "release"}).status_code == 403
    assert KillSwitch.get().engaged
    admin_web.post(reverse("web:kill-switch"), {"action": "release"})
    assert not KillSwitch.get().engaged
    assert admin_web.post(reverse("web:kill-switch"), {"action": "x"}).status_code == 400


def test_starting_while_the_kill_switch_is_engaged_is_refused(operator_web, experiment):
    KillSwitch.objects.update_or_create(pk=1, defaults={"engaged": True})
    response = operator_web.post(reverse("web:experiment-start", args=[experiment.pk]))
    assert response.status_code == 409 and "kill switch" in response.content.decode()
    assert not Run.objects.exists()


def test_posts_without_a_csrf_token_are_refused(operator, experiment):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    url = reverse("web:experiment-start", args=[experiment.pk])
    assert client.post(url).status_code == 403
    assert not Run.objects.exists()
    page = client.get(reverse("web:experiment", args=[experiment.pk])).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    assert client.post(url, {"csrfmiddlewaretoken": token}).status_code == 302
    assert Run.objects.count() == 1


def test_the_report_page_has_a_chart_per_metric_and_downloads(viewer_web, judged):
    html = viewer_web.get(reverse("web:report", args=[judged.pk])).content.decode()
    names = [m["name"] for m in judged.spec["metrics"]]
    for name in names:
        assert f'data-metric="{name}"' in html
    assert html.count("<svg") == len(names)
    for fmt in ("html", "md", "json", "junit"):
        assert reverse("web:report-export", args=[judged.pk, fmt]) in html
    assert "Findings" in html and "Timeline" in html and "Resilience score" in html
    # at a glance first: the per-metric table comes before the first chart
    glance = html.index('<table class="glance">')
    assert glance < html.index("<svg") < html.index('id="report-findings"')
    for name in names:
        assert f'<tr data-metric="{name}">' in html[glance:]
    css = re.search(r'href="(/static/web/report\.css)"', html).group(1)
    assert b"table.glance" in b"".join(Client().get(css).streaming_content)


def test_report_downloads_come_from_the_export_module(viewer_web, judged):
    for fmt, kind in (("html", "text/html"), ("md", "text/markdown"), ("junit", "xml")):
        response = viewer_web.get(reverse("web:report-export", args=[judged.pk, fmt]))
        assert response.status_code == 200 and kind in response["Content-Type"]
        assert f"scep-run-{judged.pk}" in response["Content-Disposition"]
    missing = viewer_web.get(reverse("web:report-export", args=[judged.pk, "pdf"]))
    assert missing.status_code == 404


def test_an_operator_accepts_a_suggestion_and_starts_it_in_one_click(
    operator_web, experiment, judged
):
    spec = dict(experiment.spec, name="suggested-latency")
    suggestion = Suggestion.objects.create(run=judged, kind="repeat", title="again", spec=spec)
    report = operator_web.get(reverse("web:report", args=[judged.pk])).content.decode()
    if judged.suggestions.filter(status="open").exists():
        assert "Accept and start" in report
    response = operator_web.post(
        reverse("web:suggestion-accept", args=[suggestion.pk]), {"start": "1"}
    )
    suggestion.refresh_from_db()
    assert suggestion.status == SuggestionStatus.ACCEPTED
    run = Run.objects.get(experiment=suggestion.experiment)
    assert response["Location"] == reverse("web:run", args=[run.pk])


def test_assets_are_served_locally(viewer_web):
    page = viewer_web.get(reverse("web:dashboard")).content.decode()
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page)
    assert any(a.endswith(".css") for a in assets) and any("htmx" in a for a in assets)
    for asset in assets:
        response = Client().get(asset)
        assert response.status_code == 200, asset
        body = b"".join(response.streaming_content)
        assert len(body) > 100
    assert Client().get("/static/web/nope.css").status_code == 404


def test_the_report_of_a_run_not_yet_analysed_still_renders(viewer_web, experiment):
    run = Run.objects.create(experiment=experiment, experiment_version=1, spec=experiment.spec)
    html = viewer_web.get(reverse("web:report", args=[run.pk])).content.decode()
    assert "No findings." in html and "inconclusive" in html and "No metrics." in html


def test_the_editor_offers_the_shipped_examples_as_starting_points(operator_web):
    page = operator_web.get(reverse("web:experiment-new")).content.decode()
    assert "?example=demo-latency" in page
    filled = operator_web.get(reverse("web:experiment-new") + "?example=demo-latency")
    assert "name: demo-latency" in filled.content.decode()
    unknown = operator_web.get(reverse("web:experiment-new") + "?example=../../etc/passwd")
    assert unknown.status_code == 200 and "root:" not in unknown.content.decode()
