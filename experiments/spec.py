"""The experiment spec: its schema, parsing from YAML/JSON, and validation.

Every error names the field path (``metrics[1].probe.url``) and the reason, so that a
user reading one line of CLI output or one API error knows what to fix. Policy caps from
settings are checked here too and named in the message.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from analysis.collectors.query_template import placeholders, query_context
from injectors.base import FieldError, InvalidParams, UnknownInjector, pydantic_errors
from injectors.registry import get_injector

__all__ = [
    "ExperimentSpec",
    "SpecError",
    "load_spec_text",
    "parse_duration",
    "validate_spec",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class SpecError(Exception):
    """An invalid spec; ``errors`` lists every problem with its field path."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))

    def as_dict(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for err in self.errors:
            out.setdefault(err.path or "spec", []).append(err.reason)
        return out


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as ``"20s"``, ``"1.5m"``, ``"250ms"``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 20, '20s', '2m'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
    else:
        raise ValueError(f"expected a duration such as 20, '20s', '2m', got {value!r}")
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.\-]{0,99}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class FaultSpec(_Strict):
    type: str
    params: dict[str, Any] = Field(default_factory=dict)


ProbeMeasure = Literal[
    "latency_p50", "latency_p95", "latency_p99", "latency_mean", "error_rate", "throughput"
]


class ProbeSpec(_Strict):
    """The platform itself calls ``url`` ``requests`` times per interval."""

    url: Annotated[str, Field(pattern=r"^https?://")]
    method: Literal["GET", "HEAD", "POST", "PUT", "DELETE"] = "GET"
    timeout: Duration = 2.0
    requests: Annotated[int, Field(ge=1, le=100)] = 5
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)


class ScrapeSpec(_Strict):
    """Reads one metric family from a Prometheus text endpoint; counters become rates."""

    url: Annotated[str, Field(pattern=r"^https?://")]
    metric: Annotated[str, Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")]
    labels: dict[str, str] = Field(default_factory=dict)
    aggregate: Literal["sum", "mean", "max", "min"] = "sum"
    counter: Literal["rate", "raw"] = "rate"
    timeout: Duration = 2.0


class PrometheusSpec(_Strict):
    """A PromQL query against a Prometheus server; ``{target}``/``{label}`` placeholders
    are filled from the target, so one spec works for every target."""

    url: Annotated[str, Field(pattern=r"^https?://")]
    query: Annotated[str, Field(min_length=1, max_length=4000)]
    step: Annotated[float, BeforeValidator(parse_duration), Field(gt=0)] | None = None
    timeout: Annotated[float, BeforeValidator(parse_duration), Field(gt=0, le=60)] = 5.0


# Statistics GetMetricData accepts: the five basic ones, percentiles (p99, p99.9) and the
# trimmed/winsorized families (tm99, wm90, tc90, ts90), plus the interquartile mean.
_CW_STAT = (
    r"^(Average|Sum|Maximum|Minimum|SampleCount|IQM|(p|tm|wm|tc|ts)(100|\d{1,2}(\.\d{1,3})?))$"
)


class CloudWatchSpec(_Strict):
    """A CloudWatch metric statistic. No credential fields on purpose: they come from
    the environment/profile chain of the worker, never from a stored spec."""

    namespace: Annotated[str, Field(min_length=1, max_length=255)]
    metric_name: Annotated[str, Field(min_length=1, max_length=255)]
    dimensions: Annotated[dict[str, str], Field(max_length=30)] = Field(default_factory=dict)
    stat: Annotated[str, Field(pattern=_CW_STAT)] = "Average"
    period: int = 60
    region: Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")] | None = None
    endpoint_url: Annotated[str, Field(pattern=r"^https?://")] | None = None
    timeout: Annotated[float, BeforeValidator(parse_duration), Field(gt=0, le=60)] = 5.0

    @field_validator("period", mode="before")
    @classmethod
    def _whole_seconds(cls, v: Any) -> int:
        seconds = parse_duration(v)
        if seconds != int(seconds):
            raise ValueError("must be a whole number of seconds")
        return int(seconds)

    @field_validator("period")
    @classmethod
    def _cloudwatch_period(cls, v: int) -> int:
        if v < 1 or (v not in (1, 5, 10, 30) and v % 60):
            raise ValueError("must be 1, 5, 10, 30 (high-resolution metrics) or a multiple of 60")
        return v


_SOURCES = ("probe", "scrape", "prometheus", "cloudwatch")


class MetricSpec(_Strict):
    """One series to collect. ``role``, ``component``/``targeted`` and ``ceiling`` tell
    the analysis what the metric means when its name and unit do not: a change on a
    component the fault was not aimed at is collateral impact; a saturation metric near
    its ceiling is saturation."""

    name: Identifier
    better: Literal["lower", "higher"]
    unit: str = ""
    role: Literal["", "latency", "errors", "throughput", "saturation", "collateral"] = ""
    component: str = ""
    targeted: bool = True
    ceiling: float | None = None
    probe: ProbeSpec | None = None
    measure: ProbeMeasure | None = None
    scrape: ScrapeSpec | None = None
    prometheus: PrometheusSpec | None = None
    cloudwatch: CloudWatchSpec | None = None

    @model_validator(mode="after")
    def _one_source(self) -> MetricSpec:
        given = [name for name in _SOURCES if getattr(self, name) is not None]
        if len(given) != 1:
            # The wording keeps "exactly one of 'probe' or 'scrape'" that users and
            # tests already match on.
            raise ValueError(
                "exactly one of 'probe' or 'scrape' or 'prometheus' or 'cloudwatch' is "
                f"required, got {', '.join(given) or 'none'}"
            )
        if self.probe is not None and self.measure is None:
            raise ValueError(
                "'measure' is required with 'probe' (one of "
                "latency_p50, latency_p95, latency_p99, latency_mean, error_rate, throughput)"
            )
        if self.probe is None and self.measure is not None:
            raise ValueError("'measure' applies only to 'probe' metrics")
        return self


Operator = Literal["<", "<=", ">", ">="]
Aggregate = Literal["p50", "p95", "p99", "mean", "max", "min", "rate"]


class RuleSpec(_Strict):
    """``aggregate(metric over phase) operator threshold``.

    With ``relative: baseline`` the threshold is a factor of the same aggregate over the
    baseline (``p95 <= 1.5`` means "at most 1.5 × the baseline p95").
    """

    name: str = ""
    metric: Identifier
    phase: Literal["baseline", "during", "recovery"] = "during"
    aggregate: Aggregate = "p95"
    operator: Operator | None = None
    threshold: float
    relative: Literal["absolute", "baseline"] = "absolute"
    window: Duration | None = None
    detector: Literal["threshold", "cusum", "streaming"] = "threshold"
    consecutive: Annotated[int, Field(ge=1, le=100)] = 1

    @model_validator(mode="after")
    def _detector_shape(self) -> RuleSpec:
        if self.detector == "threshold" and self.operator is None:
            raise ValueError("'operator' is required (one of <, <=, >, >=)")
        if self.detector == "streaming" and not 0.0 < self.threshold < 1.0:
            raise ValueError("a streaming detector's threshold is an anomaly score in (0, 1)")
        if self.detector == "cusum" and self.threshold <= 0:
            raise ValueError("a cusum detector's threshold (decision interval h) must be > 0")
        return self

    @field_validator("threshold")
    @classmethod
    def _finite(cls, v: float) -> float:
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError("must be a finite number")
        return v

    def describe(self) -> str:
        if self.detector != "threshold":
            return f"{self.detector}({self.metric}) beyond {self.threshold:g} over {self.phase}"
        rel = " × baseline" if self.relative == "baseline" else ""
        return (
            f"{self.aggregate}({self.metric}) over {self.phase} "
            f"{self.operator} {self.threshold:g}{rel}"
        )


class CleanupSpec(_Strict):
    """An action run after the revert: an HTTP call, a command, or a pause."""

    type: Literal["http", "command", "wait"]
    url: Annotated[str, Field(pattern=r"^https?://")] | None = None
    method: Literal["GET", "POST", "PUT", "DELETE"] = "POST"
    command: list[str] | None = None
    seconds: Duration | None = None
    timeout: Duration = 10.0

    @model_validator(mode="after")
    def _shape(self) -> CleanupSpec:
        needed = {"http": "url", "command": "command", "wait": "seconds"}[self.type]
        if getattr(self, needed) in (None, []):
            raise ValueError(f"'{needed}' is required for a {self.type!r} action")
        return self


class ExperimentSpec(_Strict):
    version: Literal[1] = 1
    name: Identifier
    description: str = ""
    target: str
    fault: FaultSpec
    intensity: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    duration: Duration
    baseline: Duration = 30.0
    recovery: Duration = 30.0
    interval: Annotated[float, BeforeValidator(parse_duration), Field(ge=0.1, le=60.0)] = 1.0
    metrics: Annotated[list[MetricSpec], Field(min_length=1)]
    hypothesis: list[RuleSpec] = Field(default_factory=list)
    stop_conditions: list[RuleSpec] = Field(default_factory=list)
    cleanup: list[CleanupSpec] = Field(default_factory=list)

    @field_validator("duration")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("must be greater than 0")
        return v

    @model_validator(mode="after")
    def _references(self) -> ExperimentSpec:
        names = [m.name for m in self.metrics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"metric names must be unique; repeated: {', '.join(dupes)}")
        return self


def load_spec_text(text: str) -> dict[str, Any]:
    """Parse YAML (a superset of JSON) into a mapping, with a one-line error otherwise."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError([FieldError("", f"not valid YAML/JSON{where}: {problem}")]) from None
    if not isinstance(data, dict):
        raise SpecError([FieldError("", "the spec must be a mapping of fields")])
    return data


def _reference_errors(spec: ExperimentSpec) -> list[FieldError]:
    errors: list[FieldError] = []
    names = {m.name for m in spec.metrics}
    for field_name in ("hypothesis", "stop_conditions"):
        for i, rule in enumerate(getattr(spec, field_name)):
            if rule.metric not in names:
                errors.append(
                    FieldError(
                        f"{field_name}[{i}].metric",
                        f"unknown metric {rule.metric!r}; defined: {', '.join(sorted(names))}",
                    )
                )
            if field_name == "hypothesis" and rule.detector != "threshold":
                errors.append(
                    FieldError(
                        f"{field_name}[{i}].detector",
                        "statistical detectors serve stop conditions; hypothesis rules "
                        "use thresholds (the analysis applies its own statistics)",
                    )
                )
            if field_name == "stop_conditions" and rule.phase != "during":
                errors.append(
                    FieldError(
                        f"{field_name}[{i}].phase",
                        "stop conditions are checked while the fault is active: use 'during'",
                    )
                )
            if rule.relative == "baseline" and rule.phase == "baseline":
                errors.append(
                    FieldError(
                        f"{field_name}[{i}].relative",
                        "a baseline rule cannot be relative to the baseline",
                    )
                )
    return errors


def _placeholder_errors(
    spec: ExperimentSpec, target_labels: dict[str, Any] | None
) -> list[FieldError]:
    """Placeholders of Prometheus queries the target cannot fill.

    ``{target}`` is always known (the spec names its target). Label placeholders can
    only be checked when the caller knows the target's labels; without them they are
    left to the collector, which refuses a placeholder without a value at start.
    """
    known = set(query_context(spec.target, target_labels))
    errors = []
    for i, metric in enumerate(spec.metrics):
        if metric.prometheus is None:
            continue
        used = placeholders(metric.prometheus.query)
        unknown = [p for p in used if p not in known and target_labels is not None]
        if unknown:
            errors.append(
                FieldError(
                    f"metrics[{i}].prometheus.query",
                    f"unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; "
                    f"target {spec.target!r} provides: "
                    + ", ".join("{" + k + "}" for k in sorted(known)),
                )
            )
    return errors


def _policy_errors(spec: ExperimentSpec, caps: dict[str, float]) -> list[FieldError]:
    errors = []
    if spec.duration > caps["max_duration"]:
        errors.append(
            FieldError(
                "duration",
                f"{spec.duration:g} s exceeds the cap SCEP_MAX_DURATION_S={caps['max_duration']:g}",
            )
        )
    if spec.intensity > caps["max_intensity"]:
        errors.append(
            FieldError(
                "intensity",
                f"{spec.intensity:g} exceeds the cap SCEP_MAX_INTENSITY={caps['max_intensity']:g}",
            )
        )
    for field_name in ("baseline", "recovery"):
        value = getattr(spec, field_name)
        if value > caps["max_window"]:
            errors.append(
                FieldError(
                    field_name,
                    f"{value:g} s exceeds the cap SCEP_MAX_WINDOW_S={caps['max_window']:g}",
                )
            )
    return errors


def default_caps() -> dict[str, float]:
    from django.conf import settings

    return {
        "max_duration": settings.SCEP_MAX_DURATION_S,
        "max_intensity": settings.SCEP_MAX_INTENSITY,
        "max_window": settings.SCEP_MAX_WINDOW_S,
    }


def validate_spec(
    data: dict[str, Any] | str,
    *,
    target_config: dict[str, Any] | None = None,
    caps: dict[str, float] | None = None,
    target_labels: dict[str, Any] | None = None,
) -> ExperimentSpec:
    """Validate a spec mapping (or YAML/JSON text) completely, or raise SpecError.

    Shape, cross-references, the fault's own parameters (by its injector) and policy
    caps are all checked, and every problem is reported at once. With ``target_labels``
    (the target's ``labels``), ``{label}`` placeholders of Prometheus queries are checked
    against them too.
    """
    if isinstance(data, str):
        data = load_spec_text(data)
    try:
        spec = ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        errors = pydantic_errors(exc)
        errors.extend(_fault_errors(data.get("fault"), target_config, shape_failed=True))
        raise SpecError(_dedupe(errors)) from None
    errors = _reference_errors(spec)
    errors.extend(_placeholder_errors(spec, target_labels))
    errors.extend(_fault_errors(data.get("fault"), target_config, shape_failed=False))
    errors.extend(_policy_errors(spec, caps or default_caps()))
    if errors:
        raise SpecError(errors)
    spec.fault.params = get_injector(spec.fault.type).validate(spec.fault.params, target_config)
    return spec


def _fault_errors(
    fault: Any, target_config: dict[str, Any] | None, *, shape_failed: bool
) -> list[FieldError]:
    if not isinstance(fault, dict) or not isinstance(fault.get("type"), str):
        return []
    try:
        injector = get_injector(fault["type"].strip())
    except UnknownInjector as exc:
        return [FieldError("fault.type", str(exc))]
    params = fault.get("params") or {}
    if not isinstance(params, dict):
        return [] if shape_failed else [FieldError("fault.params", "must be a mapping")]
    try:
        injector.validate(params, target_config)
    except InvalidParams as exc:
        return [
            FieldError(f"fault.params.{e.path}" if e.path else "fault.params", e.reason)
            for e in exc.errors
        ]
    return []


def _dedupe(errors: list[FieldError]) -> list[FieldError]:
    seen, out = set(), []
    for e in errors:
        if (e.path, e.reason) not in seen:
            seen.add((e.path, e.reason))
            out.append(e)
    return out


def dump_spec(spec: ExperimentSpec) -> dict[str, Any]:
    """The canonical JSON form stored on experiments and runs."""
    return json.loads(spec.model_dump_json())
