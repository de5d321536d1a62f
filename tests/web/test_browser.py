"""The web UI in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``,
driven by selenium with the driver path given, so nothing is downloaded), against the
live server, a real orchestrator worker, a real agent and the demo API behind its fault
proxy.

One journey: log in → paste a spec with an error and see it flagged at its line → fix
it → save → start → watch the run finish live → open the report and find its charts →
accept a suggestion; then a viewer, who sees no start button and whose POST is refused.
The browser console must stay free of errors. Screenshots go to ``var/screenshots/``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group

from analysis.models import Suggestion, SuggestionStatus
from campaigns.models import Campaign
from experiments.models import Experiment, Run
from scep.permissions import OPERATOR, VIEWER, ensure_roles
from web.views import spec_yaml

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1000",
)
PASSWORD = "a long browser-test password"
WAIT_S = 60
RUN_WAIT_S = 180


def require_chromium() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing:
        return
    reason = f"{' and '.join(missing)} missing (apt-get install chromium chromium-driver)"
    if os.environ.get("CI"):
        pytest.fail(f"browser tests must run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # belt and braces: never fetch a driver
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(
        executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log")
    )
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


class Journey:
    """Small helpers over the driver: wait, screenshot, collect console errors."""

    def __init__(self, driver, base_url: str):
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver = driver
        self.base = base_url
        self.wait = WebDriverWait(driver, WAIT_S, poll_frequency=0.2)
        self.console: list[dict] = []
        self.shots = Path(settings.VAR_DIR) / "screenshots"
        self.shots.mkdir(parents=True, exist_ok=True)

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)
        self.drain()

    def find(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def until(self, predicate, what: str, timeout: float = WAIT_S):
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        def check(_driver):
            try:
                return predicate()
            except StaleElementReferenceException:  # htmx swapped it out: ask again
                return False

        return WebDriverWait(
            self.driver,
            timeout,
            poll_frequency=0.2,
            ignored_exceptions=(Exception,),
        ).until(check, message=f"waiting for {what}")

    def shot(self, name: str) -> None:
        self.driver.save_screenshot(str(self.shots / f"{name}.png"))

    def drain(self) -> None:
        self.console.extend(self.driver.get_log("browser"))

    def console_errors(self) -> list[str]:
        self.drain()
        return [e["message"] for e in self.console if e.get("level") == "SEVERE"]

    def log_in(self, username: str) -> None:
        self.open("/login/")
        self.find("#id_username").send_keys(username)
        self.find("#id_password").send_keys(PASSWORD)
        self.find("#login").click()
        self.until(lambda: self.find("#whoami").text == username, f"{username} logged in")

    def set_spec(self, text: str) -> None:
        """Paste the whole text into the editor, as a user pasting from a file would."""
        area = self.find("#spec")
        self.driver.execute_script(
            "arguments[0].value = arguments[1];"
            "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
            area,
            text,
        )


def make_user(django_user_model, username: str, role: str):
    ensure_roles()
    user = django_user_model.objects.create_user(username=username, password=PASSWORD)
    user.groups.add(Group.objects.get(name=role))
    return user


def test_an_operator_edits_runs_and_reads_a_report_and_a_viewer_only_reads(
    browser, live_server, stack, start_worker, django_user_model
):
    from selenium.webdriver.common.by import By

    operator = make_user(django_user_model, "olga-operator", OPERATOR)
    viewer = make_user(django_user_model, "vic-viewer", VIEWER)
    start_worker()
    ui = Journey(browser, live_server.url)

    # Log in; the dashboard shows the kill switch and nothing running.
    ui.log_in(operator.username)
    assert "released" in ui.find("#kill-switch-state").text
    ui.shot("01-dashboard")

    # Paste a spec with an error: it is flagged at the offending field's line.
    spec = stack.spec(name="browser-latency")
    good = spec_yaml(spec)
    bad = good.replace("latency_ms: 150", "latency_ms: -150")
    assert bad != good
    ui.open("/experiments/new/")
    ui.set_spec(bad)
    ui.find("#check-spec").click()
    flagged = ui.until(
        lambda: [e for e in ui.all(".field-error") if "fault.params.latency_ms" in e.text],
        "the latency error to be flagged",
    )
    line = int(flagged[0].get_attribute("data-line"))
    assert bad.splitlines()[line - 1].strip() == "latency_ms: -150"
    ui.shot("02-editor-error")

    # Fix it: the check passes with a dry-run preview; save it.
    ui.set_spec(good)
    ui.find("#check-spec").click()
    preview = ui.until(lambda: ui.find("#check-ok #dry-run").text, "the dry-run preview")
    assert "150" in preview
    ui.shot("03-editor-valid")
    ui.find("#save-spec").click()
    ui.until(lambda: ui.find("#experiment-name").text == "browser-latency", "experiment page")
    experiment = Experiment.objects.get(name="browser-latency")

    # Start it and watch it finish on the live run page.
    ui.find("#start-run").click()
    ui.until(lambda: ui.find("#run-status"), "the run page")
    run = Run.objects.get(experiment=experiment)
    seen = set()

    def finished() -> bool:
        status = ui.find("#run-status").get_attribute("data-status")
        seen.add(status)
        return status in ("completed", "aborted", "failed")

    ui.until(finished, f"run {run.pk} to finish", timeout=RUN_WAIT_S)
    ui.shot("04-run-finished")
    run.refresh_from_db()
    assert run.status == "completed", run.status_reason
    assert seen & {"baseline", "during", "recovery", "analysing"}, seen  # it was live
    timeline = ui.find("#timeline").text
    assert "fault active" in timeline and "completed" in timeline

    # The report: a chart per metric, downloads, findings.
    ui.find("#open-report").click()
    ui.until(lambda: ui.all("#report svg.chart"), "the report's charts")
    charts = ui.all("#report svg.chart")
    assert sorted(c.get_attribute("data-metric") for c in charts) == ["errors", "latency"]
    assert ui.all("#report svg.chart .c-inject") and ui.all("#report svg.chart .c-revert")
    for fmt in ("html", "md", "json", "junit"):
        assert ui.find(f"#download-{fmt}").get_attribute("href").endswith(f"/{fmt}/")
    ui.shot("05-report")

    # Accept a suggestion in one click: it becomes an experiment.
    accept = ui.until(
        lambda: ui.driver.find_elements(By.XPATH, "//button[normalize-space()='Accept']"),
        "a suggestion to accept",
    )
    accept[0].click()
    ui.until(lambda: ui.find("#experiment-name").text, "the suggested experiment's page")
    accepted = Suggestion.objects.get(run=run, status=SuggestionStatus.ACCEPTED)
    assert ui.find("#experiment-name").text == accepted.experiment.name
    ui.shot("06-suggestion-accepted")

    # Put the experiment in a campaign through the form and pause it from its page.
    ui.open("/campaigns/new/")
    ui.find("#name").send_keys("browser-campaign")
    ui.find("#experiments").send_keys("browser-latency")
    ui.find("#save-campaign").click()
    ui.until(lambda: ui.find("#campaign-name").text.startswith("browser-campaign"), "campaign")
    assert "browser-latency" in ui.find("#campaign-items").text
    ui.find("#pause-campaign").click()
    ui.until(lambda: ui.all("#paused-tag"), "the campaign to show paused")
    assert Campaign.objects.get(name="browser-campaign").paused
    ui.shot("06b-campaign-paused")

    assert ui.console_errors() == []

    # A viewer reads but cannot start: no button, and a forged POST is refused.
    ui.find("#logout").click()
    ui.until(lambda: ui.find("#id_username"), "the login page")
    ui.log_in(viewer.username)
    ui.open(f"/experiments/{experiment.pk}/")
    assert ui.find("#experiment-name").text == "browser-latency"
    assert not ui.all("#start-run") and not ui.all("#edit-experiment")
    ui.open(f"/runs/{run.pk}/report/")
    assert len(ui.all("#report svg.chart")) == 2
    assert not ui.driver.find_elements(By.XPATH, "//button[normalize-space()='Accept']")
    ui.shot("07-viewer-report")
    assert ui.console_errors() == []
    status = ui.driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const token = JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRFToken'];"
        f"fetch('/experiments/{experiment.pk}/start/', {{method: 'POST',"
        " headers: {'X-CSRFToken': token}, credentials: 'same-origin'})"
        ".then(r => done(r.status), e => done(String(e)));"
    )
    assert status == 403
    assert Run.objects.filter(experiment=experiment).count() == 1
