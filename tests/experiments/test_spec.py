"""The spec validator, as a table of bad specs and the error each must produce.

Each row: a change to a valid spec, the field path the error must name, and a piece of
the message. The point is not only *that* a spec is refused but that the message tells
the user where and why, which is what these rows pin down.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from experiments.spec import SpecError, parse_duration, validate_spec
from tests.conftest import DEMO_CONFIG, VALID_SPEC

EXAMPLES = Path(__file__).resolve().parents[2] / "experiments" / "examples"
CAPS = {"max_duration": 3600.0, "max_intensity": 1.0, "max_window": 3600.0}

Mutation = Callable[[dict[str, Any]], Any]


def _set(path: str, value: Any) -> Mutation:
    """A mutation that sets ``a.b[0].c`` (``value`` of ``DELETE`` removes the key)."""

    def apply(spec: dict[str, Any]) -> None:
        node: Any = spec
        parts = path.replace("]", "").replace("[", ".").split(".")
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node[part]
        last = parts[-1]
        if value is DELETE:
            del node[last]
        elif last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value

    return apply


DELETE = object()
PROBE = {"url": "http://127.0.0.1:1/x"}
LATENCY = "fault.params.latency_ms"

# (id, mutation, expected path, message fragment, extra validate_spec kwargs)
BAD: list[tuple[str, Mutation, str, str, dict[str, Any]]] = [
    ("missing-name", _set("name", DELETE), "name", "Field required", {}),
    ("bad-name-pattern", _set("name", "Has Spaces"), "name", "should match pattern", {}),
    ("name-starts-with-digit", _set("name", "1st"), "name", "pattern", {}),
    ("missing-target", _set("target", DELETE), "target", "Field required", {}),
    (
        "unknown-fault-type",
        _set("fault.type", "network.teleport"),
        "fault.type",
        "unknown fault type 'network.teleport'; known types: ",
        {},
    ),
    ("fault-params-missing", _set(f"{LATENCY}", DELETE), LATENCY, "Field required", {}),
    ("fault-params-negative", _set(LATENCY, -5), LATENCY, "greater than 0", {}),
    ("fault-params-type", _set(LATENCY, "slow"), LATENCY, "valid number", {}),
    (
        "fault-unknown-param",
        _set("fault.params.color", "red"),
        "fault.params.color",
        "unknown field",
        {},
    ),
    ("fault-params-not-mapping", _set("fault.params", [1]), "fault.params", "dictionary", {}),
    ("missing-duration", _set("duration", DELETE), "duration", "Field required", {}),
    ("negative-duration", _set("duration", -3), "duration", "must not be negative", {}),
    ("zero-duration", _set("duration", 0), "duration", "greater than 0", {}),
    ("bad-duration-string", _set("duration", "ten seconds"), "duration", "expected a duration", {}),
    ("bad-duration-unit", _set("duration", "10d"), "duration", "expected a duration", {}),
    ("boolean-duration", _set("baseline", True), "baseline", "expected a duration", {}),
    ("intensity-over-one", _set("intensity", 1.5), "intensity", "less than or equal to 1", {}),
    ("intensity-zero", _set("intensity", 0), "intensity", "greater than 0", {}),
    ("interval-too-small", _set("interval", "50ms"), "interval", "greater than or equal", {}),
    (
        "duration-over-cap",
        _set("duration", "2h"),
        "duration",
        "SCEP_MAX_DURATION_S=3600",
        {},
    ),
    (
        "intensity-over-lower-cap",
        _set("intensity", 0.8),
        "intensity",
        "SCEP_MAX_INTENSITY=0.5",
        {"caps": {**CAPS, "max_intensity": 0.5}},
    ),
    (
        "baseline-over-window-cap",
        _set("baseline", "2m"),
        "baseline",
        "SCEP_MAX_WINDOW_S=60",
        {"caps": {**CAPS, "max_window": 60.0}},
    ),
    ("empty-metrics", _set("metrics", []), "metrics", "at least 1 item", {}),
    (
        "probe-and-scrape",
        _set("metrics[0].scrape", {"url": "http://h/metrics", "metric": "m"}),
        "metrics.0",
        "exactly one of 'probe' or 'scrape'",
        {},
    ),
    (
        "neither-probe-nor-scrape",
        _set("metrics[0].probe", DELETE),
        "metrics.0",
        "exactly one of",
        {},
    ),
    (
        "probe-without-measure",
        _set("metrics[0].measure", DELETE),
        "metrics.0",
        "'measure' is required",
        {},
    ),
    (
        "unknown-measure",
        _set("metrics[0].measure", "latency_p42"),
        "metrics.0.measure",
        "latency_p50",
        {},
    ),
    (
        "bad-url-scheme",
        _set("metrics[0].probe.url", "ftp://127.0.0.1/x"),
        "metrics.0.probe.url",
        "should match pattern",
        {},
    ),
    (
        "probe-requests-zero",
        _set("metrics[0].probe.requests", 0),
        "metrics.0.probe.requests",
        "greater than or equal to 1",
        {},
    ),
    (
        "scrape-bad-metric-name",
        lambda s: s["metrics"].append(
            {"name": "scraped", "better": "lower", "scrape": {"url": "http://h/m", "metric": "a-b"}}
        ),
        "metrics.2.scrape.metric",
        "pattern",
        {},
    ),
    (
        "duplicate-metric-names",
        _set("metrics[1].name", "latency"),
        "",
        "repeated: latency",
        {},
    ),
    (
        "rule-on-unknown-metric",
        _set("hypothesis[0].metric", "cpu"),
        "hypothesis[0].metric",
        "defined: error_rate, latency",
        {},
    ),
    (
        "stop-condition-in-baseline",
        _set("stop_conditions[0].phase", "baseline"),
        "stop_conditions[0].phase",
        "use 'during'",
        {},
    ),
    (
        "bad-operator",
        _set("hypothesis[0].operator", "=="),
        "hypothesis.0.operator",
        "'<', '<=', '>' or '>='",
        {},
    ),
    (
        "non-numeric-threshold",
        _set("hypothesis[0].threshold", "fast"),
        "hypothesis.0.threshold",
        "valid number",
        {},
    ),
    (
        "unknown-aggregate",
        _set("hypothesis[0].aggregate", "median"),
        "hypothesis.0.aggregate",
        "'p50'",
        {},
    ),
    (
        "baseline-relative-baseline-rule",
        lambda s: s["hypothesis"].append(
            {
                "metric": "latency",
                "phase": "baseline",
                "operator": "<",
                "threshold": 2,
                "relative": "baseline",
            }
        ),
        "hypothesis[1].relative",
        "cannot be relative to the baseline",
        {},
    ),
    (
        "bad-window",
        _set("stop_conditions[0].window", "soon"),
        "stop_conditions.0.window",
        "expected a duration",
        {},
    ),
    (
        "cleanup-http-without-url",
        _set("cleanup", [{"type": "http"}]),
        "cleanup.0",
        "'url' is required",
        {},
    ),
    (
        "cleanup-wait-without-seconds",
        _set("cleanup", [{"type": "wait"}]),
        "cleanup.0",
        "'seconds' is required",
        {},
    ),
    (
        "cleanup-unknown-type",
        _set("cleanup", [{"type": "reboot"}]),
        "cleanup.0.type",
        "'http', 'command' or 'wait'",
        {},
    ),
    ("unknown-top-level-field", _set("severity", "high"), "severity", "unknown field", {}),
    ("unsupported-version", _set("version", 2), "version", "1", {}),
    (
        "unknown-proxy-on-target",
        _set("fault.params.proxy", "sideways"),
        "fault.params.proxy",
        "the target defines: downstream",
        {"target_config": DEMO_CONFIG},
    ),
    (
        "target-without-proxies",
        lambda s: None,
        "fault.params.proxy",
        "defines no proxies",
        {"target_config": {"proxies": {}}},
    ),
    (
        "pause-two-selectors",
        _set("fault", {"type": "process.pause", "params": {"pid": 4242, "name": "x"}}),
        "fault.params",
        "exactly one",
        {},
    ),
    (
        "pause-unknown-process-entry",
        _set("fault", {"type": "process.pause", "params": {"process": "ghost"}}),
        "fault.params.process",
        "worker",
        {"target_config": DEMO_CONFIG},
    ),
]


def _errors(exc: SpecError) -> dict[str, list[str]]:
    return exc.as_dict()


@pytest.mark.parametrize(
    ("mutate", "path", "fragment", "kwargs"), [pytest.param(*row[1:], id=row[0]) for row in BAD]
)
def test_bad_spec(mutate: Mutation, path: str, fragment: str, kwargs: dict[str, Any]) -> None:
    spec = copy.deepcopy(VALID_SPEC)
    mutate(spec)
    kwargs = {"caps": CAPS, **kwargs}
    with pytest.raises(SpecError) as info:
        validate_spec(spec, **kwargs)
    errors = _errors(info.value)
    key = path or "spec"
    assert key in errors, errors
    assert any(fragment in reason for reason in errors[key]), errors[key]


def test_table_is_big_enough() -> None:
    assert len(BAD) >= 25


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("name: demo\nfault: [unclosed\n", "at line 3"),
        ("name: demo\n  target: x\n bad: indentation\n", "not valid YAML/JSON at line"),
        ("- name: demo\n- target: x\n", "must be a mapping"),
        ("just a string", "must be a mapping"),
        ("", "must be a mapping"),
    ],
)
def test_bad_text(text: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        validate_spec(text, caps=CAPS)
    assert fragment in str(info.value)
    assert list(info.value.as_dict()) == ["spec"]


def test_every_problem_is_reported_at_once() -> None:
    spec = copy.deepcopy(VALID_SPEC)
    spec["intensity"] = 3
    spec["fault"]["params"]["latency_ms"] = -1
    spec["metrics"][0]["probe"]["url"] = "file:///etc/passwd"
    with pytest.raises(SpecError) as info:
        validate_spec(spec, caps=CAPS)
    assert {"intensity", LATENCY, "metrics.0.probe.url"} <= set(info.value.as_dict())


def test_valid_spec_is_normalised() -> None:
    spec = validate_spec(copy.deepcopy(VALID_SPEC), target_config=DEMO_CONFIG, caps=CAPS)
    assert spec.duration == 20.0
    assert spec.interval == 1.0
    assert spec.fault.params["direction"] == "downstream"
    assert spec.hypothesis[0].phase == "during"


@pytest.mark.parametrize(
    ("value", "seconds"), [(5, 5.0), ("250ms", 0.25), ("1.5m", 90.0), ("1h", 3600.0), ("7", 7.0)]
)
def test_parse_duration(value: Any, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_validate(path: Path) -> None:
    spec = validate_spec(path.read_text(), target_config=DEMO_CONFIG, caps=CAPS)
    assert spec.name


def test_there_are_examples() -> None:
    names = {p.name for p in EXAMPLES.glob("*.yaml")}
    assert {"demo-latency.yaml", "reset-peer.yaml", "pause-process.yaml"} <= names
