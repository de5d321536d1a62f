"""``cloud.s3_unavailable`` against moto.

moto (5.x) does enforce an explicit Deny in a bucket policy for object requests
(GetObject, PutObject …: HTTP 403), so the fault's effect is checked for real. It ignores
the policy's Principal and Condition, though, and does not apply bucket policies to
bucket-level calls (ListObjects, Get/Put/DeleteBucketPolicy), so the exemption of SCEP's
own principal is only checked on the policy document, and restoring works in moto even
without it (in real AWS it would not; hence ``exempt_principal_arns`` is required there).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from injectors.base import InjectionContext, InjectionError, InvalidParams
from injectors.cloud.injectors import POLICY_SID, S3UnavailableInjector, deny_policy

#: Deliberately odd spacing and key order: restore must give back these exact bytes.
EXISTING_POLICY = (
    '{"Version": "2012-10-17",  "Statement":[{"Sid":"ReadForApp","Effect":"Allow",'
    '"Principal":{"AWS":"arn:aws:iam::123456789012:role/app"},'
    '"Action":"s3:GetObject","Resource":"arn:aws:s3:::%s/*"}]}'
)


@pytest.fixture
def bucket(aws: Callable[[str], Any], unique: str) -> str:
    name = f"scep-test-{unique}"
    s3 = aws("s3")
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_object(Bucket=name, Key="hello.txt", Body=b"hi")
    return name


def current_policy(s3: Any, bucket: str) -> str | None:
    try:
        return s3.get_bucket_policy(Bucket=bucket)["Policy"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NoSuchBucketPolicy":
            return None
        raise


def test_no_policy_then_deny_then_removed(
    aws: Callable[[str], Any], bucket: str, make_ctx: Callable[..., InjectionContext]
) -> None:
    s3, ctx, injector = aws("s3"), make_ctx(), S3UnavailableInjector()
    assert s3.get_object(Bucket=bucket, Key="hello.txt")["Body"].read() == b"hi"

    text = injector.dry_run({"bucket": bucket}, ctx)
    assert "would deny s3:*" in text and "(no policy yet)" in text
    assert current_policy(s3, bucket) is None  # dry run changed nothing

    handle = injector.inject({"bucket": bucket}, ctx)

    assert handle["previous_policy"] is None
    assert current_policy(s3, bucket) == handle["injected_policy"]
    with pytest.raises(ClientError) as denied:
        s3.get_object(Bucket=bucket, Key="hello.txt")
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    injector.revert(handle, ctx)
    injector.revert(handle, ctx)  # idempotent

    assert current_policy(s3, bucket) is None
    assert s3.get_object(Bucket=bucket, Key="hello.txt")["Body"].read() == b"hi"


def test_existing_policy_is_restored_byte_for_byte(
    aws: Callable[[str], Any], bucket: str, make_ctx: Callable[..., InjectionContext]
) -> None:
    s3, ctx, injector = aws("s3"), make_ctx(), S3UnavailableInjector()
    original = EXISTING_POLICY % bucket
    s3.put_bucket_policy(Bucket=bucket, Policy=original)
    as_returned = current_policy(s3, bucket)

    handle = injector.inject({"bucket": bucket}, ctx)
    assert handle["previous_policy"] == as_returned
    assert current_policy(s3, bucket) != as_returned

    injector.revert(handle, ctx)

    restored = current_policy(s3, bucket)
    assert restored == as_returned == original  # moto returns what was put, verbatim
    assert json.loads(restored) == json.loads(original)


def test_revert_leaves_a_policy_changed_after_the_fault_alone(
    aws: Callable[[str], Any], bucket: str, make_ctx: Callable[..., InjectionContext]
) -> None:
    s3, ctx, injector = aws("s3"), make_ctx(), S3UnavailableInjector()
    handle = injector.inject({"bucket": bucket}, ctx)
    injector.revert(handle, ctx)
    newer = EXISTING_POLICY % bucket
    s3.put_bucket_policy(Bucket=bucket, Policy=newer)  # someone's later change

    injector.revert(handle, ctx)  # a late duplicate revert (reaper, kill switch …)

    assert current_policy(s3, bucket) == newer


def test_second_fault_on_the_same_bucket_is_refused(
    bucket: str, make_ctx: Callable[..., InjectionContext]
) -> None:
    ctx, injector = make_ctx(), S3UnavailableInjector()
    handle = injector.inject({"bucket": bucket}, ctx)
    with pytest.raises(InjectionError, match="already carries SCEP's deny policy"):
        injector.inject({"bucket": bucket}, ctx)
    injector.revert(handle, ctx)


def test_revert_after_the_bucket_was_deleted(
    aws: Callable[[str], Any], bucket: str, make_ctx: Callable[..., InjectionContext]
) -> None:
    s3, ctx, injector = aws("s3"), make_ctx(), S3UnavailableInjector()
    handle = injector.inject({"bucket": bucket}, ctx)
    s3.delete_bucket_policy(Bucket=bucket)
    s3.delete_object(Bucket=bucket, Key="hello.txt")
    s3.delete_bucket(Bucket=bucket)
    injector.revert(handle, ctx)  # no error: nothing left to restore


def test_missing_bucket_is_refused(make_ctx: Callable[..., InjectionContext]) -> None:
    injector = S3UnavailableInjector()
    assert "does not exist" in injector.dry_run({"bucket": "no-such-bucket-x"}, make_ctx())
    with pytest.raises(InjectionError, match="does not exist"):
        injector.inject({"bucket": "no-such-bucket-x"}, make_ctx())


def test_exempt_principals_become_a_condition(
    aws: Callable[[str], Any], bucket: str, make_ctx: Callable[..., InjectionContext]
) -> None:
    scep_role = "arn:aws:iam::123456789012:role/scep-agent"
    handle = S3UnavailableInjector().inject(
        {"bucket": bucket, "exempt_principal_arns": [scep_role]}, make_ctx()
    )
    [statement] = json.loads(current_policy(aws("s3"), bucket))["Statement"]
    assert statement["Sid"] == POLICY_SID and statement["Effect"] == "Deny"
    assert statement["Principal"] == "*" and statement["Action"] == "s3:*"
    assert statement["Resource"] == [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
    assert statement["Condition"] == {"ArnNotLike": {"aws:PrincipalArn": [scep_role]}}
    S3UnavailableInjector().revert(handle, make_ctx())


def test_deny_policy_uses_the_regions_partition() -> None:
    statement = json.loads(deny_policy("b-1", "aws-cn", []))["Statement"][0]
    assert statement["Resource"][0] == "arn:aws-cn:s3:::b-1"
    assert "Condition" not in statement


def test_real_aws_requires_an_exemption() -> None:
    real = {"aws": {"region": "eu-west-1"}}
    with pytest.raises(InvalidParams) as info:
        S3UnavailableInjector().validate({"bucket": "my-bucket"}, real)
    [error] = info.value.errors
    assert error.path == "exempt_principal_arns" and "real AWS" in error.reason
    ok = {"bucket": "my-bucket", "exempt_principal_arns": ["arn:aws:iam::123456789012:role/x"]}
    S3UnavailableInjector().validate(ok, real)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "bucket"),
        ({"bucket": "Not_A_Bucket"}, "bucket"),
        ({"bucket": "arn:aws:s3:::b"}, "bucket"),
        ({"bucket": "ok-bucket", "exempt_principal_arns": ["scep"]}, "exempt_principal_arns"),
        ({"bucket": "ok-bucket", "secret_access_key": "x"}, "secret_access_key"),
    ],
)
def test_validation_names_the_field(params: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidParams) as info:
        S3UnavailableInjector().validate(params)
    assert field in {e.path for e in info.value.errors}
