"""EC2 faults against moto: who gets selected, what revert touches, and the guard rails."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from injectors.base import InjectionContext, InjectionError, InvalidParams
from injectors.cloud.injectors import (
    Ec2RebootInjector,
    Ec2StopInjector,
    Ec2TerminateInjector,
    wait_until_settled,
)
from injectors.registry import get_injector
from tests.injectors.cloud.conftest import FAKE_SECRET

AMI = "ami-12c6146b"  # any id works in moto; this one is in its default image list


def launch(ec2: Any, n: int, tags: dict[str, str] | None = None) -> list[str]:
    kwargs: dict[str, Any] = {"ImageId": AMI, "MinCount": n, "MaxCount": n}
    if tags:
        kwargs["TagSpecifications"] = [
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]
    return sorted(i["InstanceId"] for i in ec2.run_instances(**kwargs)["Instances"])


def states(ec2: Any, ids: list[str]) -> dict[str, str]:
    found = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    return {i["InstanceId"]: i["State"]["Name"] for r in found for i in r["Instances"]}


#: For validation-only tests; tests that launch instances use their fleet's own tags.
WEB = {"app": "shop", "tier": "web"}


@pytest.fixture
def fleet(aws: Callable[[str], Any], unique: str) -> dict[str, Any]:
    """Four instances with both tags, two with only the app tag matching, one untagged."""
    ec2 = aws("ec2")
    app = f"shop-{unique}"
    return {
        "ec2": ec2,
        "tags": {"app": app, "tier": "web"},
        "web": launch(ec2, 4, {"app": app, "tier": "web"}),
        "other_tier": launch(ec2, 2, {"app": app, "tier": "db"}),
        "untagged": launch(ec2, 1),
    }


def test_registered_in_cloud_family() -> None:
    for name in ("cloud.ec2_stop", "cloud.ec2_terminate", "cloud.ec2_reboot"):
        injector = get_injector(name)
        assert injector.family == "cloud"
        assert injector.host_local is False


def test_stop_half_then_revert_starts_exactly_those(
    fleet: dict[str, Any], make_ctx: Callable[..., InjectionContext]
) -> None:
    ec2, ctx, injector = fleet["ec2"], make_ctx(), Ec2StopInjector()
    params = injector.validate({"tags": fleet["tags"], "percent": 50}, ctx.target_config)

    handle = injector.inject(params, ctx)

    stopped = [item["id"] for item in handle["instances"]]
    assert stopped == fleet["web"][:2]  # lowest ids first: repeatable
    assert all(item["prior_state"] == "running" for item in handle["instances"])
    assert handle["matched"] == 4 and handle["revertible"] is True
    assert handle["aws"]["region"] == "eu-west-1"
    now = states(ec2, fleet["web"] + fleet["other_tier"] + fleet["untagged"])
    assert {i for i, s in now.items() if s != "running"} == set(stopped)

    # One of ours was started by hand meanwhile; a bystander was stopped by someone else.
    ec2.start_instances(InstanceIds=[stopped[0]])
    ec2.stop_instances(InstanceIds=[fleet["web"][3]])

    injector.revert(handle, ctx)
    injector.revert(handle, ctx)  # idempotent

    now = states(ec2, fleet["web"])
    assert now[stopped[0]] in ("pending", "running")
    assert now[stopped[1]] in ("pending", "running")
    assert now[fleet["web"][3]] == "stopped"  # not ours: revert leaves it stopped


def test_stop_uses_intensity_when_no_count_or_percent(
    fleet: dict[str, Any], make_ctx: Callable[..., InjectionContext]
) -> None:
    injector = Ec2StopInjector()
    handle = injector.inject({"tags": fleet["tags"]}, make_ctx(intensity=0.25))
    assert [i["id"] for i in handle["instances"]] == fleet["web"][:1]


def test_count_and_instance_ids_restrict_the_choice(
    fleet: dict[str, Any], make_ctx: Callable[..., InjectionContext]
) -> None:
    injector = Ec2StopInjector()
    wanted = fleet["web"][2:] + fleet["untagged"]  # the untagged one cannot match the tags
    handle = injector.inject(
        {"tags": fleet["tags"], "instance_ids": wanted, "count": 5}, make_ctx()
    )
    assert [i["id"] for i in handle["instances"]] == fleet["web"][2:]


def test_revert_after_instances_vanished_counts_as_done(
    fleet: dict[str, Any], make_ctx: Callable[..., InjectionContext]
) -> None:
    ec2, ctx, injector = fleet["ec2"], make_ctx(), Ec2StopInjector()
    handle = injector.inject({"tags": fleet["tags"], "count": 2}, ctx)
    ec2.terminate_instances(InstanceIds=[handle["instances"][0]["id"]])
    handle["instances"].append({"id": "i-0123456789abcdef0", "prior_state": "running"})

    injector.revert(handle, ctx)

    assert states(ec2, [handle["instances"][1]["id"]])[handle["instances"][1]["id"]] in (
        "pending",
        "running",
    )


def test_revert_waits_while_instances_are_stopping() -> None:
    """moto stops instantly, so the wait loop is exercised with a scripted client."""

    class Scripted:
        def __init__(self) -> None:
            self.rounds = [{"i-aaaaaaaa": "stopping"}, {"i-aaaaaaaa": "stopped"}]

        def get_paginator(self, _name: str) -> Any:
            rounds = self.rounds

            class Pager:
                def paginate(self, **_kwargs: Any) -> list[dict[str, Any]]:
                    state = rounds.pop(0) if len(rounds) > 1 else rounds[0]
                    instances = [{"InstanceId": i, "State": {"Name": s}} for i, s in state.items()]
                    return [{"Reservations": [{"Instances": instances}]}]

            return Pager()

    slept: list[float] = []
    result = wait_until_settled(Scripted(), ["i-aaaaaaaa"], 60, 2, sleep=slept.append)
    assert result == {"i-aaaaaaaa": "stopped"} and slept == [2]

    stuck = Scripted()
    stuck.rounds = [{"i-aaaaaaaa": "stopping"}]
    with pytest.raises(InjectionError, match="still stopping"):
        wait_until_settled(stuck, ["i-aaaaaaaa"], 0, 1, sleep=lambda _s: None)


def test_terminate_is_irreversible_and_says_so(
    fleet: dict[str, Any], make_ctx: Callable[..., InjectionContext]
) -> None:
    ec2, ctx, injector = fleet["ec2"], make_ctx(), Ec2TerminateInjector()
    text = injector.dry_run({"tags": fleet["tags"], "count": 1}, ctx)
    assert "irreversible" in text and fleet["web"][0] in text
    assert states(ec2, fleet["web"])[fleet["web"][0]] == "running"  # dry run changed nothing

    handle = injector.inject({"tags": fleet["tags"], "count": 1}, ctx)
    assert handle["revertible"] is False
    assert handle["instances"] == [{"id": fleet["web"][0], "prior_state": "running"}]
    injector.revert(handle, ctx)  # documented no-op
    assert states(ec2, fleet["web"])[fleet["web"][0]] in ("shutting-down", "terminated")
    assert set(states(ec2, fleet["web"][1:]).values()) == {"running"}


def test_reboot_keeps_instances_running(
    fleet: dict[str, Any], make_ctx: Callable[..., InjectionContext]
) -> None:
    ec2, ctx, injector = fleet["ec2"], make_ctx(), Ec2RebootInjector()
    handle = injector.inject({"tags": fleet["tags"], "percent": 100, "max_instances": 4}, ctx)
    assert [i["id"] for i in handle["instances"]] == fleet["web"]
    assert handle["revertible"] is False
    injector.revert(handle, ctx)
    assert set(states(ec2, fleet["web"]).values()) == {"running"}


def test_only_running_instances_are_candidates(
    fleet: dict[str, Any], make_ctx: Callable[..., InjectionContext]
) -> None:
    fleet["ec2"].stop_instances(InstanceIds=fleet["web"][:3])
    handle = Ec2RebootInjector().inject({"tags": fleet["tags"], "percent": 100}, make_ctx())
    assert [i["id"] for i in handle["instances"]] == fleet["web"][3:]


def test_nothing_matching_is_refused(
    fleet: dict[str, Any], make_ctx: Callable[..., InjectionContext]
) -> None:
    injector = Ec2StopInjector()
    params = {"tags": {"app": "no-such-app"}}
    assert "no running instances tagged app=no-such-app" in injector.dry_run(params, make_ctx())
    with pytest.raises(InjectionError, match="no running instances tagged app=no-such-app"):
        injector.inject(params, make_ctx())


def test_percent_above_the_cap_is_refused_at_inject(
    aws: Callable[[str], Any], make_ctx: Callable[..., InjectionContext], unique: str
) -> None:
    ec2, tags = aws("ec2"), {"app": f"big-{unique}"}
    ids = launch(ec2, 12, tags)
    with pytest.raises(InjectionError, match="above max_instances"):
        Ec2StopInjector().inject({"tags": tags, "percent": 100}, make_ctx())
    assert set(states(ec2, ids).values()) == {"running"}


@pytest.mark.parametrize(
    ("params", "field", "reason"),
    [
        ({}, "tags", "Field required"),
        ({"tags": {}}, "tags", "at least 1"),
        ({"tags": {"": "x"}}, "tags", "must not be empty"),
        ({"tags": WEB, "count": 0}, "count", "greater than or equal to 1"),
        ({"tags": WEB, "count": 11}, "count", "exceeds max_instances (10)"),
        ({"tags": WEB, "count": 20, "max_instances": 25}, None, None),
        ({"tags": WEB, "percent": 0}, "percent", "greater than 0"),
        ({"tags": WEB, "percent": 101}, "percent", "less than or equal to 100"),
        ({"tags": WEB, "count": 1, "percent": 50}, "percent", "either count or percent"),
        ({"tags": WEB, "max_instances": 0}, "max_instances", "greater than or equal to 1"),
        ({"tags": WEB, "instance_ids": ["web-1"]}, "instance_ids", "not EC2 instance ids"),
        ({"tags": WEB, "region": "us-east-1"}, "region", "unknown field"),
    ],
)
def test_validation_names_the_field(params: dict[str, Any], field: str, reason: str) -> None:
    if field is None:
        Ec2StopInjector().validate(params)
        return
    with pytest.raises(InvalidParams) as info:
        Ec2StopInjector().validate(params)
    assert any(e.path == field and reason in e.reason for e in info.value.errors), info.value


@pytest.mark.parametrize("key", ["access_key_id", "aws_secret_access_key", "Session-Token"])
def test_credentials_in_params_are_refused_with_a_reason(key: str) -> None:
    with pytest.raises(InvalidParams) as info:
        Ec2StopInjector().validate({"tags": WEB, key: FAKE_SECRET})
    [error] = info.value.errors
    assert error.path == key and "never takes AWS credentials" in error.reason
    assert FAKE_SECRET not in str(info.value)


def test_credentials_in_target_config_are_refused(target_config: dict[str, Any]) -> None:
    config = {"aws": {**target_config["aws"], "access_key_id": "AKIAABCDEFGHIJKLMNOP"}}
    config["aws"]["secret_access_key"] = FAKE_SECRET
    with pytest.raises(InvalidParams) as info:
        Ec2StopInjector().validate({"tags": WEB}, config)
    paths = {e.path for e in info.value.errors}
    assert paths == {"aws.access_key_id", "aws.secret_access_key"}
    assert "AKIA" not in str(info.value) and FAKE_SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("aws_config", "field"),
    [
        (None, "aws"),
        ({}, "aws.region"),
        ({"region": "Ireland"}, "aws.region"),
        ({"region": "eu-west-1", "endpoint_url": "ftp://x"}, "aws.endpoint_url"),
        ({"region": "eu-west-1", "endpoint_url": "http://u:p@localhost:1"}, "aws.endpoint_url"),
        ({"region": "eu-west-1", "role_arn": "admin"}, "aws.role_arn"),
        ({"region": "eu-west-1", "account": "1"}, "aws.account"),
    ],
)
def test_bad_aws_settings_name_the_field(aws_config: dict[str, Any] | None, field: str) -> None:
    config = {} if aws_config is None else {"aws": aws_config}
    with pytest.raises(InvalidParams) as info:
        Ec2StopInjector().validate({"tags": WEB}, config)
    assert field in {e.path for e in info.value.errors}
    assert "u:p@" not in str(info.value)


def test_handle_and_dry_run_carry_no_secret(
    fleet: dict[str, Any], make_ctx: Callable[..., InjectionContext]
) -> None:
    ctx = make_ctx()
    text = Ec2StopInjector().dry_run({"tags": fleet["tags"], "count": 1}, ctx)
    handle = Ec2StopInjector().inject({"tags": fleet["tags"], "count": 1}, ctx)
    blob = json.dumps(handle) + text
    assert FAKE_SECRET not in blob and "testing" not in blob
    assert set(handle["aws"]) == {"region", "profile", "endpoint_url", "role_arn"}


def test_unknown_profile_fails_cleanly(
    fleet: dict[str, Any], make_ctx: Callable[..., InjectionContext], target_config: dict
) -> None:
    config = {"aws": {**target_config["aws"], "profile": "nobody"}}
    text = Ec2StopInjector().dry_run({"tags": fleet["tags"]}, make_ctx(config=config))
    assert text.startswith("cloud.ec2_stop: inject would fail:") and "nobody" in text
    with pytest.raises(InjectionError, match="ProfileNotFound"):
        Ec2StopInjector().inject({"tags": fleet["tags"]}, make_ctx(config=config))
