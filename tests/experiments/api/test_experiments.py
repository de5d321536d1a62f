"""Experiments over the API: YAML and JSON input, versioning, validation, bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from experiments.models import Experiment

pytestmark = pytest.mark.django_db

URL = "/api/v1/experiments/"


def test_create_from_json_envelope(operator_client: Any, target: Any, valid_spec: dict) -> None:
    response = operator_client.post(URL, {"spec": valid_spec}, format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["name"] == "latency-demo"
    assert data["target"] == "demo"
    assert data["version"] == 1
    assert data["versions"] == 1
    assert data["created_by"] == "otto-operator"
    # Stored normalised: durations in seconds, defaults filled in.
    assert data["spec"]["duration"] == 20.0
    assert data["spec"]["intensity"] == 1.0
    assert data["spec"]["fault"]["params"]["latency_ms"] == 300


def test_create_from_raw_spec_body(operator_client: Any, target: Any, valid_spec: dict) -> None:
    response = operator_client.post(URL, valid_spec, format="json")
    assert response.status_code == 201, response.content


def test_create_from_yaml(operator_client: Any, target: Any, valid_spec: dict) -> None:
    text = "# a comment survives nothing but parsing\n" + yaml.safe_dump(valid_spec)
    response = operator_client.post(URL, {"yaml": text}, format="json")
    assert response.status_code == 201, response.content
    assert Experiment.objects.get().spec["metrics"][0]["name"] == "latency"


def test_duplicate_name_is_400(operator_client: Any, experiment: Any, valid_spec: dict) -> None:
    response = operator_client.post(URL, {"spec": valid_spec}, format="json")
    assert response.status_code == 400
    assert "already exists" in response.json()["errors"]["name"][0]


def test_change_makes_a_new_version(operator_client: Any, experiment: Any, make_spec: Any) -> None:
    response = operator_client.put(
        f"{URL}{experiment.pk}/", {"spec": make_spec(duration="30s")}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["version"] == 2
    assert response.json()["versions"] == 2
    versions = operator_client.get(f"{URL}{experiment.pk}/versions/").json()
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[0]["spec"]["duration"] == 30.0
    assert versions[1]["spec"]["duration"] == 20.0


def test_identical_update_keeps_the_version(
    operator_client: Any, experiment: Any, valid_spec: dict
) -> None:
    # "20s" and 20 normalise to the same spec, so this is not a change.
    response = operator_client.put(
        f"{URL}{experiment.pk}/", {"spec": {**valid_spec, "duration": 20}}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["version"] == 1
    assert experiment.versions.count() == 1


def test_patch_is_not_offered(operator_client: Any, experiment: Any) -> None:
    response = operator_client.patch(f"{URL}{experiment.pk}/", {"spec": {}}, format="json")
    assert response.status_code == 405


def test_validate_ok_with_dry_run(operator_client: Any, target: Any, valid_spec: dict) -> None:
    response = operator_client.post(f"{URL}validate/", {"spec": valid_spec}, format="json")
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["valid"] is True
    assert data["spec"]["baseline"] == 10.0
    assert "downstream" in data["dry_run"]
    assert not Experiment.objects.exists()


def test_validate_reports_the_field_path(operator_client: Any, target: Any, make_spec: Any) -> None:
    bad = make_spec(fault={"type": "network.latency", "params": {"proxy": "downstream"}})
    response = operator_client.post(f"{URL}validate/", {"spec": bad}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert "fault.params.latency_ms" in body["errors"]
    assert body["detail"].startswith("fault.params.latency_ms")


def test_validate_unknown_target_lists_known_ones(
    operator_client: Any, target: Any, make_spec: Any
) -> None:
    response = operator_client.post(
        f"{URL}validate/", {"spec": make_spec(target="nowhere")}, format="json"
    )
    assert response.status_code == 400
    assert "demo" in response.json()["errors"]["target"][0]


def test_validate_unknown_proxy_on_the_target(
    operator_client: Any, target: Any, make_spec: Any
) -> None:
    fault = {"type": "network.latency", "params": {"proxy": "elsewhere", "latency_ms": 5}}
    response = operator_client.post(
        f"{URL}validate/", {"spec": make_spec(fault=fault)}, format="json"
    )
    assert response.status_code == 400
    assert "downstream" in response.json()["errors"]["fault.params.proxy"][0]


GARBAGE: list[tuple[str, Any, str]] = [
    ("not-json", "{this is not json", "application/json"),
    ("list-body", json.dumps([1, 2, 3]), "application/json"),
    ("string-body", json.dumps("hello"), "application/json"),
    ("null-body", "null", "application/json"),
    ("empty-object", "{}", "application/json"),
    ("both-keys", json.dumps({"spec": {}, "yaml": "a: 1"}), "application/json"),
    ("yaml-syntax", json.dumps({"yaml": "name: [unclosed\n  target: x"}), "application/json"),
    ("yaml-list", json.dumps({"yaml": "- a\n- b\n"}), "application/json"),
    ("yaml-not-text", json.dumps({"yaml": 42}), "application/json"),
    ("spec-is-list", json.dumps({"spec": [1]}), "application/json"),
    ("spec-is-string", json.dumps({"spec": "name: x"}), "application/json"),
    ("extra-envelope-key", json.dumps({"spec": {}, "name": "x"}), "application/json"),
    (
        "wrong-types",
        json.dumps(
            {
                "name": 5,
                "target": ["demo"],
                "fault": "latency",
                "duration": {"s": 1},
                "metrics": "all",
                "intensity": "lots",
            }
        ),
        "application/json",
    ),
    (
        "nested-wrong-types",
        json.dumps(
            {
                "name": "x",
                "target": "demo",
                "fault": {"type": 7, "params": []},
                "duration": True,
                "metrics": [{"name": "m", "better": "lower", "probe": "http://x"}],
                "hypothesis": [{"metric": "m", "operator": "<", "threshold": "high"}],
            }
        ),
        "application/json",
    ),
    ("form-encoded", "spec=1&yaml=2", "application/x-www-form-urlencoded"),
    ("plain-text", "name: x", "text/plain"),
]


@pytest.mark.parametrize(("raw", "content_type"), [pytest.param(r, c, id=i) for i, r, c in GARBAGE])
@pytest.mark.parametrize("endpoint", ["", "validate/"])
def test_garbage_is_a_400_never_a_500(
    operator_client: Any, target: Any, endpoint: str, raw: str, content_type: str
) -> None:
    response = operator_client.generic("POST", f"{URL}{endpoint}", raw, content_type=content_type)
    # 415 for a media type the API does not parse at all; every other answer is 400.
    assert response.status_code in (400, 415), response.content
    assert response.json()["detail"]
    if response.status_code == 400 and "errors" in response.json():
        assert isinstance(response.json()["errors"], dict)


def test_garbage_on_update_is_400(operator_client: Any, experiment: Any) -> None:
    response = operator_client.generic(
        "PUT", f"{URL}{experiment.pk}/", "[1]", content_type="application/json"
    )
    assert response.status_code == 400


def test_delete_with_runs_is_409(operator_client: Any, experiment: Any) -> None:
    from experiments.services.runs import start_run

    start_run(experiment, actor=None, source="system")
    response = operator_client.delete(f"{URL}{experiment.pk}/")
    assert response.status_code == 409
    assert "run" in response.json()["detail"]
    assert Experiment.objects.filter(pk=experiment.pk).exists()


def test_delete_without_runs(operator_client: Any, experiment: Any) -> None:
    assert operator_client.delete(f"{URL}{experiment.pk}/").status_code == 204
    assert not Experiment.objects.exists()
