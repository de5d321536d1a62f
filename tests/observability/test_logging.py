"""JSON log lines, tagged with run_id inside run_context."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from observability.logging import JsonFormatter, RunContextFilter, current_run_id, run_context


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RunContextFilter())
    logger = logging.getLogger("scep.test.observability")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_run_id_only_inside_run_context(
    capture: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = capture
    logger.info("before")
    with run_context(42):
        logger.warning("inside %s", "the run", extra={"phase": "during"})
        with run_context(43):
            logger.info("nested")
        assert current_run_id() == 42
    logger.info("after")

    before, inside, nested, after = _lines(stream)
    assert "run_id" not in before and "run_id" not in after
    assert inside["run_id"] == 42
    assert inside["message"] == "inside the run"
    assert inside["level"] == "WARNING"
    assert inside["logger"] == "scep.test.observability"
    assert inside["phase"] == "during"
    assert str(inside["time"]).endswith("+00:00")
    assert nested["run_id"] == 43
    assert current_run_id() is None


def test_exceptions_and_odd_extras_stay_one_json_line(
    capture: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = capture
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        logger.exception("failed", extra={"obj": object()})
    (line,) = _lines(stream)
    assert "ValueError: boom" in str(line["exc_info"])
    assert str(line["obj"]).startswith("<object object")


def test_settings_select_the_json_formatter() -> None:
    """The LOGGING dict accepts SCEP_LOG_FORMAT=json (configured in a copy, not live)."""
    from logging.config import DictConfigurator

    from django.conf import settings

    config = json.loads(json.dumps(settings.LOGGING))
    config["handlers"]["console"]["formatter"] = "json"
    configured = DictConfigurator(config)
    assert isinstance(configured.configure_formatter(config["formatters"]["json"]), JsonFormatter)
    assert "run_context" in config["filters"]
