"""Property-based run of schemathesis against the API's own OpenAPI schema.

Every operation is called with generated (valid and invalid) input by an admin token,
in-process through the WSGI app and the test database. A case fails on a 5xx, on a
response body that does not match the documented schema, or on a content type the
schema does not announce. The number of cases tried per operation is bounded so the
whole run fits a loaded 2-core machine; hypothesis keeps its examples database under
the test's var dir so a failure found once is replayed first next time.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

pytestmark = pytest.mark.django_db

#: Checks applied to every response: no crash, body matches the schema, right media type.
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]

#: Cases per operation; 60 operations x this is the run's size.
EXAMPLES = 25


@pytest.fixture
def api_schema(roles: None, target: Any, experiment: Any) -> Any:
    """The schema served by the app itself, loaded through the WSGI interface.

    Django closes the database connection at the end of each request; inside a test
    transaction that would close the test database under our feet, so (as Django's own
    test client does) the handler is disconnected for the duration.
    """
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    from scep.wsgi import application

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/v1/schema/", application)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def admin_token(admin_client: Any, admin_user: Any) -> str:
    from rest_framework.authtoken.models import Token

    return Token.objects.get(user=admin_user).key


def _fuzz(operation: Any, mode: GenerationMode, token: str, tally: dict[str, Any]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        tally["cases"] += 1
        try:
            case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=CHECKS)
        except BaseException as exc:  # schemathesis raises a (Base)ExceptionGroup
            if isinstance(exc, KeyboardInterrupt):
                raise
            tally["failures"].append(f"{operation.label} [{mode.value}]: {exc}"[:1500])
            raise

    try:
        run()
    except BaseException as exc:  # recorded in the tally by the inner function
        if isinstance(exc, KeyboardInterrupt):
            raise


def test_api_answers_generated_requests_without_5xx_or_schema_violations(
    api_schema: Any, admin_token: str
) -> None:
    tally: dict[str, Any] = {"cases": 0, "operations": 0, "failures": []}
    for result in api_schema.get_all_operations():
        operation = result.ok()
        tally["operations"] += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(operation, mode, admin_token, tally)
    print(f"schemathesis: {tally['operations']} operations, {tally['cases']} cases")
    assert tally["operations"] >= 40, tally["operations"]
    failures = sorted(set(tally["failures"]))
    assert not failures, f"{len(failures)} failing cases:\n" + "\n\n".join(failures)
