"""Target credentials: encrypted at rest, write-only in the API, audited by name only,
resolvable from the environment or a file, and masked in log lines."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from audit.models import AuditEntry
from experiments.models import Target
from scep.crypto import SecretUnavailable, resolve_reference
from scep.redaction import SecretRedactingFilter, redact_secrets

DSN = "postgresql://shop:hunter2-Pw@db.internal:5432/shop"


@pytest.mark.django_db
def test_secrets_are_encrypted_in_the_database(make_target: Any) -> None:
    target = make_target("shop", secrets={"postgres": {"dsn": DSN}})
    with connection.cursor() as cursor:
        cursor.execute("SELECT secrets FROM experiments_target WHERE id = %s", [target.pk])
        stored = cursor.fetchone()[0]
    assert stored.startswith("fernet1:")
    assert "hunter2" not in stored and "postgres" not in stored
    assert Target.objects.get(pk=target.pk).secrets == {"postgres": {"dsn": DSN}}


@pytest.mark.django_db
def test_api_takes_secrets_but_never_returns_them(admin_client: Any) -> None:
    body = {
        "name": "shop",
        "config": {"postgres": {"database": "shop"}},
        "secrets": {"postgres": {"dsn": DSN}, "aws": {"profile": "env:SHOP_AWS_PROFILE"}},
    }
    created = admin_client.post("/api/v1/targets/", body, format="json")
    assert created.status_code == 201, created.content
    for response in (created, admin_client.get(f"/api/v1/targets/{created.json()['id']}/")):
        assert "hunter2" not in response.content.decode()
        assert "secrets" not in response.json()
        assert response.json()["secret_keys"] == ["aws.profile", "postgres.dsn"]
    target = Target.objects.get(name="shop")
    assert target.connection_config(resolve=False)["postgres"] == {"database": "shop", "dsn": DSN}
    entry = AuditEntry.objects.get(action="target.create")
    assert "hunter2" not in json.dumps(entry.changes)
    assert entry.changes["secrets"]["after"] == ["aws.profile", "postgres.dsn"]
    # A change of secrets is audited by name, values still out of the trail.
    patched = admin_client.patch(
        f"/api/v1/targets/{target.pk}/",
        {"secrets": {"postgres": {"dsn": DSN + "x"}}},
        format="json",
    )
    assert patched.status_code == 200
    update = AuditEntry.objects.get(action="target.update")
    assert "hunter2" not in json.dumps(update.changes)
    assert update.changes["secrets"]["before"] == ["aws.profile", "postgres.dsn"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("secrets", "path"),
    [("a string", "secrets"), ({"postgres": {"dsn": 5}}, "secrets"), ({"x": ""}, "secrets")],
)
def test_bad_secrets_are_400(admin_client: Any, secrets: Any, path: str) -> None:
    response = admin_client.post(
        "/api/v1/targets/", {"name": "shop", "secrets": secrets}, format="json"
    )
    assert response.status_code == 400
    assert path in response.json()["errors"]


def test_references_read_the_environment_and_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOP_DSN", DSN)
    secret_file = tmp_path / "dsn"
    secret_file.write_text(DSN + "\n")
    assert resolve_reference("env:SHOP_DSN") == DSN
    assert resolve_reference(f"file:{secret_file}") == DSN
    assert resolve_reference("plain") == "plain"
    with pytest.raises(SecretUnavailable, match="MISSING_VAR"):
        resolve_reference("env:MISSING_VAR")
    with pytest.raises(SecretUnavailable, match="cannot be read"):
        resolve_reference(f"file:{tmp_path / 'absent'}")


@pytest.mark.django_db
def test_injectors_get_resolved_credentials_and_a_clear_error_when_missing(
    make_target: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from injectors.base import InjectionError
    from injectors.execution import _context
    from injectors.models import ActiveFault

    target = make_target("shop", secrets={"postgres": {"dsn": "env:SHOP_DSN"}})
    fault = ActiveFault(target=target, injector="database.pg_terminate_backends", params={})
    fault.expires_at = timezone.now()
    monkeypatch.setenv("SHOP_DSN", DSN)
    assert _context(fault, None).target_config["postgres"]["dsn"] == DSN
    monkeypatch.delenv("SHOP_DSN")
    with pytest.raises(InjectionError, match="SHOP_DSN"):
        _context(fault, None)


def test_log_lines_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    assert redact_secrets(f"cannot connect to {DSN}") == (
        "cannot connect to postgresql://shop:****@db.internal:5432/shop"
    )
    assert "hunter2" not in redact_secrets("host=db password=hunter2 user=x")
    assert "AKIAABCDEFGHIJKLMNOP" not in redact_secrets("key AKIAABCDEFGHIJKLMNOP used")
    assert "T00/B00/xyz" not in redact_secrets(
        "post to https://hooks.slack.com/services/T00/B00/xyz"
    )
    assert "abc123" not in redact_secrets("Authorization: Token abc123")

    logger = logging.getLogger("tests.secrets")
    logger.addFilter(SecretRedactingFilter())
    try:
        with caplog.at_level(logging.WARNING, logger="tests.secrets"):
            logger.warning("driver said: %s", f"FATAL for {DSN}")
            try:
                raise RuntimeError(f"password=hunter2 rejected for {DSN}")
            except RuntimeError:
                logger.exception("failed")
    finally:
        logger.filters.clear()
    assert "hunter2" not in caplog.text
    assert "****" in caplog.text


def test_the_configured_console_handler_redacts() -> None:
    from django.conf import settings

    assert "redact_secrets" in settings.LOGGING["handlers"]["console"]["filters"]


@pytest.mark.django_db
def test_reports_and_exports_never_contain_target_secrets(make_target: Any, make_spec: Any) -> None:
    from analysis.exports import FORMATS, export_run
    from analysis.services import build_report
    from experiments.services.catalog import create_experiment
    from experiments.services.runs import start_run

    make_target("demo", secrets={"postgres": {"dsn": DSN}, "token": "tok-hunter2"})
    run = start_run(create_experiment(make_spec(), actor=None, source="system"), actor=None,
                    source="system")  # fmt: skip
    report = json.dumps(build_report(run), default=str)
    assert "demo" in report  # the target is in it, by name
    assert "hunter2" not in report
    for fmt in FORMATS:
        content = export_run(run, fmt).content
        text = content.decode() if isinstance(content, bytes) else content
        assert "hunter2" not in text, fmt
