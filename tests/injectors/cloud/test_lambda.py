"""``cloud.lambda_throttle`` against moto.

Only the concurrency configuration is exercised. moto runs an *invocation* in a Docker
container, which this environment does not have, so no test invokes the function; that
reserved concurrency 0 makes Lambda throttle every call is AWS's documented behaviour.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from typing import Any

import pytest

from injectors.base import InjectionContext, InjectionError, InvalidParams
from injectors.cloud.injectors import LambdaThrottleInjector


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return 'ok'\n")
    return buffer.getvalue()


@pytest.fixture
def function(aws: Callable[[str], Any], unique: str) -> str:
    role = aws("iam").create_role(
        RoleName=f"fn-role-{unique}",
        AssumeRolePolicyDocument='{"Version":"2012-10-17","Statement":[]}',
    )["Role"]["Arn"]
    name = f"scep-fn-{unique}"
    aws("lambda").create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": _zip()},
    )
    return name


def reserved(lam: Any, name: str) -> int | None:
    return lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")


def test_unset_concurrency_is_removed_again(
    aws: Callable[[str], Any], function: str, make_ctx: Callable[..., InjectionContext]
) -> None:
    lam, ctx, injector = aws("lambda"), make_ctx(), LambdaThrottleInjector()
    assert "(now unset)" in injector.dry_run({"function_name": function}, ctx)

    handle = injector.inject({"function_name": function}, ctx)

    assert handle["previous_reserved_concurrency"] is None
    assert reserved(lam, function) == 0
    injector.revert(handle, ctx)
    injector.revert(handle, ctx)  # idempotent
    assert reserved(lam, function) is None


def test_previous_value_is_restored(
    aws: Callable[[str], Any], function: str, make_ctx: Callable[..., InjectionContext]
) -> None:
    lam, ctx, injector = aws("lambda"), make_ctx(), LambdaThrottleInjector()
    lam.put_function_concurrency(FunctionName=function, ReservedConcurrentExecutions=7)

    handle = injector.inject({"function_name": function}, ctx)

    assert handle["previous_reserved_concurrency"] == 7
    assert reserved(lam, function) == 0
    injector.revert(handle, ctx)
    assert reserved(lam, function) == 7


def test_a_later_change_wins_over_a_late_revert(
    aws: Callable[[str], Any], function: str, make_ctx: Callable[..., InjectionContext]
) -> None:
    lam, ctx, injector = aws("lambda"), make_ctx(), LambdaThrottleInjector()
    handle = injector.inject({"function_name": function}, ctx)
    lam.put_function_concurrency(FunctionName=function, ReservedConcurrentExecutions=3)
    injector.revert(handle, ctx)
    assert reserved(lam, function) == 3


def test_already_throttled_function_is_refused(
    aws: Callable[[str], Any], function: str, make_ctx: Callable[..., InjectionContext]
) -> None:
    aws("lambda").put_function_concurrency(FunctionName=function, ReservedConcurrentExecutions=0)
    with pytest.raises(InjectionError, match="already has reserved concurrency 0"):
        LambdaThrottleInjector().inject({"function_name": function}, make_ctx())


def test_missing_function(make_ctx: Callable[..., InjectionContext]) -> None:
    injector = LambdaThrottleInjector()
    assert "does not exist" in injector.dry_run({"function_name": "nope"}, make_ctx())
    with pytest.raises(InjectionError, match="does not exist"):
        injector.inject({"function_name": "nope"}, make_ctx())


def test_revert_after_the_function_was_deleted(
    aws: Callable[[str], Any], function: str, make_ctx: Callable[..., InjectionContext]
) -> None:
    ctx, injector = make_ctx(), LambdaThrottleInjector()
    handle = injector.inject({"function_name": function}, ctx)
    aws("lambda").delete_function(FunctionName=function)
    injector.revert(handle, ctx)  # counts as reverted


def test_through_an_assumed_role(
    aws: Callable[[str], Any],
    function: str,
    make_ctx: Callable[..., InjectionContext],
    target_config: dict[str, Any],
    unique: str,
) -> None:
    """``aws.role_arn`` goes through STS; the handle keeps the ARN, never the keys."""
    role = aws("iam").create_role(RoleName=f"scep-agent-{unique}", AssumeRolePolicyDocument="{}")[
        "Role"
    ]["Arn"]
    config = {"aws": {**target_config["aws"], "role_arn": role}}
    ctx, injector = make_ctx(config=config), LambdaThrottleInjector()

    handle = injector.inject({"function_name": function}, ctx)

    assert handle["aws"]["role_arn"] == role
    assert set(handle) == {
        "aws",
        "function_name",
        "previous_reserved_concurrency",
        "revertible",
        "note",
    }
    injector.revert(handle, ctx)
    assert reserved(aws("lambda"), function) is None


@pytest.mark.parametrize(
    "name", ["", "has space", "fn:1", "arn:aws:lambda:eu-west-1:123456789012:function:f:prod"]
)
def test_qualified_or_malformed_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidParams) as info:
        LambdaThrottleInjector().validate({"function_name": name})
    assert [e.path for e in info.value.errors] == ["function_name"]
