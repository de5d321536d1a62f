"""The ``prometheus`` and ``cloudwatch`` metric sources of the spec."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from experiments.spec import SpecError, validate_spec
from tests.conftest import VALID_SPEC

CAPS = {"max_duration": 3600.0, "max_intensity": 1.0, "max_window": 3600.0}
PROM = {"url": "http://prom:9090", "query": 'sum(rate(x{job="{target}",env="{env}"}[1m]))'}
CW = {"namespace": "AWS/ApplicationELB", "metric_name": "TargetResponseTime",
      "dimensions": {"LoadBalancer": "app/demo/1"}, "stat": "p99", "period": "1m"}  # fmt: skip


def spec_with(*metrics: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(VALID_SPEC)
    spec["metrics"].extend(metrics)
    return spec


def errors(spec: dict[str, Any], **kw: Any) -> dict[str, list[str]]:
    with pytest.raises(SpecError) as info:
        validate_spec(spec, caps=CAPS, **kw)
    return info.value.as_dict()


def test_both_sources_validate_and_normalise():
    spec = validate_spec(
        spec_with(
            {"name": "rate", "better": "higher", "prometheus": {**PROM, "step": "2s"}},
            {"name": "p99", "better": "lower", "cloudwatch": CW},
        ),
        caps=CAPS,
        target_labels={"env": "prod"},
    )
    prom, cw = spec.metrics[-2].prometheus, spec.metrics[-1].cloudwatch
    assert prom is not None and prom.step == 2.0 and prom.timeout == 5.0
    assert cw is not None and cw.period == 60 and cw.region is None


def test_unknown_placeholder_names_the_query_field():
    spec = spec_with({"name": "rate", "better": "higher", "prometheus": PROM})
    found = errors(spec, target_labels={"zone": "a"})
    index = len(spec["metrics"]) - 1
    (reason,) = found[f"metrics[{index}].prometheus.query"]
    assert "{env}" in reason and "{target}, {zone}" in reason


def test_label_placeholders_unchecked_without_labels():
    validate_spec(spec_with({"name": "rate", "better": "higher", "prometheus": PROM}), caps=CAPS)


@pytest.mark.parametrize(
    ("metric", "path", "fragment"),
    [
        ({"prometheus": {**PROM, "query": ""}}, "prometheus.query", "at least 1"),
        ({"prometheus": {**PROM, "url": "prom:9090"}}, "prometheus.url", "pattern"),
        ({"prometheus": {**PROM, "step": 0}}, "prometheus.step", "greater than 0"),
        ({"cloudwatch": {**CW, "stat": "Median"}}, "cloudwatch.stat", "pattern"),
        ({"cloudwatch": {**CW, "period": 45}}, "cloudwatch.period", "multiple of 60"),
        ({"cloudwatch": {**CW, "aws_secret_access_key": "x"}}, "cloudwatch.aws_secret_access_key",
         "unknown field"),
        ({"cloudwatch": CW, "prometheus": PROM}, "", "got prometheus, cloudwatch"),
        ({"cloudwatch": CW, "measure": "latency_p95"}, "", "only to 'probe'"),
    ],
)  # fmt: skip
def test_bad_sources(metric, path, fragment):
    spec = spec_with({"name": "m", "better": "lower", **metric})
    index = len(spec["metrics"]) - 1
    key = f"metrics.{index}" + (f".{path}" if path else "")
    found = errors(spec)
    assert key in found, found
    assert any(fragment in reason for reason in found[key]), found[key]
