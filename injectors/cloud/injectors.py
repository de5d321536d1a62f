"""The AWS fault types: stop/terminate/reboot EC2 instances, make an S3 bucket
unavailable, throttle a Lambda function to zero.

None of these changes has a time-to-live in AWS: a stopped instance stays stopped and a
bucket policy stays in force until someone changes it. Expiry is therefore enforced by
SCEP itself: the agent and the reaper call ``revert`` once the fault's ``expires_at`` has
passed. If SCEP is down at that moment the fault persists until it comes back, which is
why every revert here is written to work long after the fact (resources that have since
disappeared count as reverted) and to be repeated safely (it only undoes what is still
SCEP's doing, and never clobbers a change someone made afterwards).

Connection settings come from the target's ``config["aws"]``; see
:mod:`injectors.cloud.aws` for why credentials are refused everywhere else.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import Field, ValidationInfo, field_validator

from injectors.base import (
    FieldError,
    InjectionContext,
    InjectionError,
    Injector,
    InvalidParams,
    Params,
)
from injectors.cloud.aws import (
    AwsConnection,
    AwsSettings,
    aws_call,
    credential_key_errors,
    error_code,
    settings_from_target,
)

__all__ = [
    "Ec2RebootInjector",
    "Ec2SelectionParams",
    "Ec2StopInjector",
    "Ec2TerminateInjector",
    "LambdaThrottleInjector",
    "LambdaThrottleParams",
    "S3UnavailableInjector",
    "S3UnavailableParams",
]

log = logging.getLogger(__name__)

_EXPIRY_NOTE = (
    "AWS has no expiry for this change; SCEP's agent and reaper revert it after expires_at"
)


# --- shared plumbing ------------------------------------------------------------------


class _CloudInjector(Injector):
    """Target checks, connections and the "inject would fail" dry-run frame."""

    family = "cloud"
    #: Applied through the AWS API rather than on the target's host.
    host_local = False

    def validate(self, params: dict[str, Any], target_config: dict[str, Any] | None = None) -> dict:
        """Refuse credential-looking params with a reason before the generic checks.

        Without this they would be reported as a bare "unknown field", which invites
        the next attempt (``aws_secret_access_key``…) instead of explaining the rule.
        """
        errors = credential_key_errors(params or {})
        if errors:
            raise InvalidParams(errors)
        return super().validate(params, target_config)

    def check_target(self, params: dict[str, Any], target_config: dict[str, Any]) -> None:
        settings = settings_from_target(target_config)
        errors = self.target_errors(params, settings)
        if errors:
            raise InvalidParams(errors)

    def target_errors(self, params: dict[str, Any], settings: AwsSettings) -> list[FieldError]:
        """Override for checks that need both the params and the AWS settings."""
        return []

    def _prepare(
        self, params: dict[str, Any], ctx: InjectionContext
    ) -> tuple[dict[str, Any], AwsConnection]:
        """Re-validate against the target as it is *now* and open a connection."""
        try:
            params = self.validate(params, ctx.target_config)
        except InvalidParams as exc:
            raise InjectionError(f"invalid fault: {exc}") from None
        settings = AwsSettings.from_mapping(ctx.target_config["aws"])
        return params, AwsConnection(settings, _session_name(ctx))

    @staticmethod
    def _reconnect(handle: dict[str, Any], ctx: InjectionContext) -> AwsConnection:
        """Connect where the fault was injected: the handle's settings win over the
        target's current config, which may have been edited in the meantime."""
        if isinstance(handle.get("aws"), dict):
            settings = AwsSettings.from_mapping(handle["aws"])
        else:
            settings = settings_from_target(ctx.target_config)
        return AwsConnection(settings, _session_name(ctx))

    def dry_run(self, params: dict[str, Any], ctx: InjectionContext) -> str:
        try:
            params, conn = self._prepare(params, ctx)
            return f"{self.name}: {self.describe(params, conn, ctx)} [{conn.settings.describe()}]"
        except InjectionError as exc:
            return f"{self.name}: inject would fail: {exc}"

    def describe(self, params: dict[str, Any], conn: AwsConnection, ctx: InjectionContext) -> str:
        """The dry-run sentence; may make read-only AWS calls."""
        raise NotImplementedError


def _session_name(ctx: InjectionContext) -> str:
    """Shows up in CloudTrail for assumed-role calls, so an auditor can tie them to a fault."""
    return f"scep-fault-{ctx.fault_id}" if ctx.fault_id is not None else "scep-adhoc"


# --- EC2 ------------------------------------------------------------------------------

_INSTANCE_ID_RE = re.compile(r"^i-[0-9a-f]{8,17}$")

#: States in which an instance no longer exists for our purposes.
_GONE_STATES = frozenset({"shutting-down", "terminated"})


class Ec2SelectionParams(Params):
    """Which running instances to hit, and how many.

    The tag filter is required on purpose: there is no way to say "every instance in the
    account". ``max_instances`` caps the blast radius even when a percentage of a larger
    fleet than expected would select more.
    """

    tags: dict[str, str] = Field(
        min_length=1, description="tag key → value; an instance must carry all of them"
    )
    instance_ids: list[str] | None = Field(
        default=None, min_length=1, description="optionally restrict to these instances too"
    )
    max_instances: int = Field(default=10, ge=1, le=1000)
    count: int | None = Field(default=None, ge=1, description="exactly this many (or all)")
    percent: float | None = Field(
        default=None, gt=0, le=100, description="this share of the matches, rounded up"
    )

    @field_validator("tags")
    @classmethod
    def _keys_not_empty(cls, value: dict[str, str]) -> dict[str, str]:
        if any(not key.strip() for key in value):
            raise ValueError("tag keys must not be empty")
        return value

    @field_validator("instance_ids")
    @classmethod
    def _valid_ids(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        bad = [v for v in value if not _INSTANCE_ID_RE.match(v)]
        if bad:
            raise ValueError(f"not EC2 instance ids: {', '.join(map(repr, bad))}")
        return sorted(set(value))

    @field_validator("count")
    @classmethod
    def _count_within_cap(cls, value: int | None, info: ValidationInfo) -> int | None:
        cap = info.data.get("max_instances")
        if value is not None and cap is not None and value > cap:
            raise ValueError(f"{value} exceeds max_instances ({cap}); raise max_instances first")
        return value

    @field_validator("percent")
    @classmethod
    def _not_with_count(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and info.data.get("count") is not None:
            raise ValueError("give either count or percent, not both")
        return value


def _describe_selection(params: dict[str, Any]) -> str:
    tags = ", ".join(f"{k}={v}" for k, v in sorted(params["tags"].items()))
    text = f"running instances tagged {tags}"
    if params.get("instance_ids"):
        text += f" among {', '.join(params['instance_ids'])}"
    return text


def _find_running(ec2: Any, params: dict[str, Any]) -> list[str]:
    """Ids of the running instances matching every tag (and the id list), sorted."""
    filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in sorted(params["tags"].items())]
    filters.append({"Name": "instance-state-name", "Values": ["running"]})
    if params.get("instance_ids"):
        # A filter, not InstanceIds=: an unknown id then simply does not match, instead of
        # failing the whole call with InvalidInstanceID.NotFound.
        filters.append({"Name": "instance-id", "Values": list(params["instance_ids"])})
    found: set[str] = set()
    with aws_call("listing EC2 instances"):
        for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
            for reservation in page.get("Reservations", []):
                found.update(i["InstanceId"] for i in reservation.get("Instances", []))
    return sorted(found)


def _current_states(ec2: Any, ids: list[str]) -> dict[str, str]:
    """State name per id; ids AWS no longer knows are simply absent."""
    states: dict[str, str] = {}
    if not ids:
        return states
    with aws_call("reading EC2 instance states"):
        paginator = ec2.get_paginator("describe_instances")
        for page in paginator.paginate(Filters=[{"Name": "instance-id", "Values": ids}]):
            for reservation in page.get("Reservations", []):
                for inst in reservation.get("Instances", []):
                    states[inst["InstanceId"]] = inst["State"]["Name"]
    return states


def choose_instances(
    matches: list[str], params: dict[str, Any], intensity: float
) -> tuple[list[str], str]:
    """The lowest ids, as many as count/percent (else ``intensity`` as a share) ask.

    Returns the choice and how its size was decided. Lowest ids first keeps a rerun on
    an unchanged fleet identical. A percentage that works out above ``max_instances`` is
    refused rather than trimmed: quietly hitting fewer instances than the experiment
    says would make its result mean something else.
    """
    if not matches:
        return [], "no match"
    if params.get("count") is not None:
        wanted = min(int(params["count"]), len(matches))
        how = f"count {params['count']}"
    else:
        if params.get("percent") is not None:
            share, how = float(params["percent"]) / 100.0, f"{params['percent']:g}%"
        else:
            share = min(max(float(intensity), 0.0), 1.0)
            how = f"intensity {share:g}"
        # The epsilon keeps 0.3 * 10 == 3.0000000000000004 from rounding up to 4.
        wanted = max(1, math.ceil(share * len(matches) - 1e-9))
    cap = int(params.get("max_instances") or 10)
    if wanted > cap:
        raise InjectionError(
            f"{how} of {len(matches)} matching instances is {wanted}, above max_instances "
            f"({cap}); raise max_instances or ask for fewer"
        )
    return matches[:wanted], how


class _Ec2Injector(_CloudInjector):
    """Select, act, record; subclasses name the action and its revert."""

    params_model = Ec2SelectionParams
    action: ClassVar[str]
    revertible: ClassVar[bool] = False
    warning: ClassVar[str] = ""

    def _select(
        self, params: dict[str, Any], conn: AwsConnection, ctx: InjectionContext
    ) -> tuple[list[str], list[str], str]:
        matches = _find_running(conn.client("ec2"), params)
        chosen, how = choose_instances(matches, params, ctx.intensity)
        return matches, chosen, how

    def describe(self, params: dict[str, Any], conn: AwsConnection, ctx: InjectionContext) -> str:
        matches, chosen, how = self._select(params, conn, ctx)
        if not chosen:
            return f"no {_describe_selection(params)}; inject would be refused"
        text = (
            f"would {self.action} {len(chosen)} of {len(matches)} {_describe_selection(params)} "
            f"({how}, max_instances {params['max_instances']}): {', '.join(chosen)}"
        )
        return f"{text}; {self.warning}" if self.warning else text

    def inject(self, params: dict[str, Any], ctx: InjectionContext) -> dict[str, Any]:
        params, conn = self._prepare(params, ctx)
        matches, chosen, _how = self._select(params, conn, ctx)
        if not chosen:
            raise InjectionError(f"refusing {self.name}: no {_describe_selection(params)}")
        log.info("%s: %s %s", self.name, self.action, ", ".join(chosen))
        prior = self.act(conn.client("ec2"), chosen)
        return {
            "aws": conn.settings.to_handle(),
            "action": self.action,
            "instances": [{"id": i, "prior_state": prior.get(i, "running")} for i in chosen],
            "matched": len(matches),
            "tags": params["tags"],
            "revertible": self.revertible,
            "note": self.note(),
        }

    def act(self, ec2: Any, ids: list[str]) -> dict[str, str]:
        """Apply the action; return each instance's state just before it (from AWS)."""
        raise NotImplementedError

    def note(self) -> str:
        raise NotImplementedError

    def revert(self, handle: dict[str, Any], ctx: InjectionContext) -> None:
        """Nothing to undo (overridden by stop)."""
        return None


class Ec2StopInjector(_Ec2Injector):
    """Stop running instances; revert starts exactly the ones this fault stopped."""

    name = "cloud.ec2_stop"
    summary = "Stop a share of the running EC2 instances matching tags; revert starts them."
    action = "stop"
    revertible = True

    #: How long revert waits for instances still "stopping" before it gives up (the
    #: reaper calls it again). Starting an instance that is still stopping fails.
    stop_wait_timeout: ClassVar[float] = 600.0
    poll_interval: ClassVar[float] = 5.0

    def act(self, ec2: Any, ids: list[str]) -> dict[str, str]:
        with aws_call("stopping EC2 instances"):
            response = ec2.stop_instances(InstanceIds=ids)
        return {
            item["InstanceId"]: item.get("PreviousState", {}).get("Name", "running")
            for item in response.get("StoppingInstances", [])
        }

    def note(self) -> str:
        return f"revert starts the listed instances that are still stopped; {_EXPIRY_NOTE}"

    def revert(self, handle: dict[str, Any], ctx: InjectionContext) -> None:
        """Start the handle's instances that are still stopped, and nothing else.

        Instances someone already started are left alone, terminated or vanished ones
        count as reverted, and instances still "stopping" are waited for first because
        StartInstances refuses them.
        """
        ids = [item["id"] for item in handle.get("instances", [])]
        if not ids:
            return
        ec2 = self._reconnect(handle, ctx).client("ec2")
        states = wait_until_settled(ec2, ids, self.stop_wait_timeout, self.poll_interval)
        to_start = sorted(i for i, state in states.items() if state == "stopped")
        gone = sorted(i for i in ids if i not in states or states[i] in _GONE_STATES)
        if gone:
            log.info("%s revert: already gone, nothing to start: %s", self.name, ", ".join(gone))
        if to_start:
            _start_instances(ec2, to_start)


def wait_until_settled(
    ec2: Any,
    ids: list[str],
    timeout: float,
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, str]:
    """Poll until none of ``ids`` is "stopping"; return the last states seen."""
    deadline = time.monotonic() + timeout
    while True:
        states = _current_states(ec2, ids)
        stopping = sorted(i for i, s in states.items() if s == "stopping")
        if not stopping:
            return states
        if time.monotonic() >= deadline:
            raise InjectionError(
                f"instances still stopping after {timeout:g} s, not started yet: "
                f"{', '.join(stopping)} (revert again later)"
            )
        sleep(interval)


def _start_instances(ec2: Any, ids: list[str]) -> None:
    """Start ``ids``; if the batch is refused, retry one by one and skip the ones that
    changed state or vanished in between (someone else started or terminated them)."""
    from botocore.exceptions import ClientError

    try:
        ec2.start_instances(InstanceIds=ids)
        return
    except ClientError as exc:
        if error_code(exc) not in ("IncorrectInstanceState", "InvalidInstanceID.NotFound"):
            with aws_call("starting EC2 instances"):
                raise
    for instance_id in ids:
        try:
            ec2.start_instances(InstanceIds=[instance_id])
        except ClientError as exc:
            if error_code(exc) in ("IncorrectInstanceState", "InvalidInstanceID.NotFound"):
                log.info("revert: %s changed state meanwhile; left as it is", instance_id)
                continue
            with aws_call(f"starting EC2 instance {instance_id}"):
                raise


class Ec2TerminateInjector(_Ec2Injector):
    """Terminate instances. Irreversible: revert does nothing, and the dry run says so."""

    name = "cloud.ec2_terminate"
    summary = "Terminate a share of the running EC2 instances matching tags; NOT revertible."
    action = "terminate"
    warning = (
        "WARNING: termination is irreversible, the instances and their instance-store and "
        "delete-on-termination volumes are gone for good; revert does nothing (an Auto "
        "Scaling group or similar must replace them)"
    )

    def act(self, ec2: Any, ids: list[str]) -> dict[str, str]:
        with aws_call("terminating EC2 instances"):
            response = ec2.terminate_instances(InstanceIds=ids)
        return {
            item["InstanceId"]: item.get("PreviousState", {}).get("Name", "running")
            for item in response.get("TerminatingInstances", [])
        }

    def note(self) -> str:
        return "terminated instances cannot be restored; revert does nothing"


class Ec2RebootInjector(_Ec2Injector):
    """Reboot instances: a short outage that ends by itself, so revert has nothing to do."""

    name = "cloud.ec2_reboot"
    summary = "Reboot a share of the running EC2 instances matching tags; ends by itself."
    action = "reboot"
    warning = "a reboot completes by itself; revert does nothing"

    def act(self, ec2: Any, ids: list[str]) -> dict[str, str]:
        with aws_call("rebooting EC2 instances"):
            ec2.reboot_instances(InstanceIds=ids)
        # RebootInstances reports no states; selection guaranteed they were running.
        return dict.fromkeys(ids, "running")

    def note(self) -> str:
        return "a reboot ends by itself; revert does nothing"


# --- S3 -------------------------------------------------------------------------------

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PRINCIPAL_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(root|user/\S+|role/\S+)$")

#: Markers that identify the deny policy as SCEP's, so revert can tell whether the
#: bucket still carries it (AWS may re-serialise the JSON, but keeps Id and Sid).
POLICY_ID = "scep-s3-unavailable"
POLICY_SID = "ScepFaultDenyAll"


class S3UnavailableParams(Params):
    bucket: str = Field(description="bucket name (not an ARN)")
    exempt_principal_arns: list[str] = Field(
        default_factory=list,
        description="IAM principals the deny does not apply to; must include the one SCEP "
        "uses against real AWS, or nobody but the account root user can restore the bucket",
    )

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        if not _BUCKET_RE.match(value) or ".." in value:
            raise ValueError("must be an S3 bucket name (3–63 of a-z, 0-9, '.', '-')")
        return value

    @field_validator("exempt_principal_arns")
    @classmethod
    def _principal_arns(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not _PRINCIPAL_ARN_RE.match(v)]
        if bad:
            raise ValueError(
                "must be IAM principal ARNs (arn:aws:iam::<account>:role/…, user/… or root); "
                f"got {', '.join(map(repr, bad))}"
            )
        return list(dict.fromkeys(value))


def deny_policy(bucket: str, partition: str, exempt: list[str]) -> str:
    """The deny-everything bucket policy, as compact JSON.

    Exemptions use ``ArnNotLike`` on ``aws:PrincipalArn`` rather than ``NotPrincipal``:
    the condition matches a role whatever its session name, while NotPrincipal would
    need every assumed-role session ARN spelled out.
    """
    statement: dict[str, Any] = {
        "Sid": POLICY_SID,
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [f"arn:{partition}:s3:::{bucket}", f"arn:{partition}:s3:::{bucket}/*"],
    }
    if exempt:
        statement["Condition"] = {"ArnNotLike": {"aws:PrincipalArn": list(exempt)}}
    policy = {"Version": "2012-10-17", "Id": POLICY_ID, "Statement": [statement]}
    return json.dumps(policy, separators=(",", ":"))


def is_scep_policy(text: str | None) -> bool:
    if not text:
        return False
    try:
        policy = json.loads(text)
    except ValueError:
        return False
    if not isinstance(policy, dict):
        return False
    statements = policy.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    sids = {s.get("Sid") for s in statements or [] if isinstance(s, dict)}
    return policy.get("Id") == POLICY_ID or POLICY_SID in sids


class _BucketGone(Exception):
    pass


def _get_policy(s3: Any, bucket: str) -> str | None:
    """The bucket's policy exactly as AWS returns it, or None; _BucketGone if no bucket."""
    from botocore.exceptions import ClientError

    try:
        return s3.get_bucket_policy(Bucket=bucket)["Policy"]
    except ClientError as exc:
        code = error_code(exc)
        if code == "NoSuchBucketPolicy":
            return None
        if code == "NoSuchBucket":
            raise _BucketGone(bucket) from None
        with aws_call(f"reading the policy of bucket {bucket!r}"):
            raise


class S3UnavailableInjector(_CloudInjector):
    """Replace a bucket's policy with deny-all; revert puts the old one back verbatim."""

    name = "cloud.s3_unavailable"
    summary = "Deny all access to an S3 bucket with a bucket policy; revert restores the old one."
    params_model = S3UnavailableParams

    def target_errors(self, params: dict[str, Any], settings: AwsSettings) -> list[FieldError]:
        if settings.is_real_aws and not params.get("exempt_principal_arns"):
            return [
                FieldError(
                    "exempt_principal_arns",
                    "required against real AWS (no aws.endpoint_url): a deny-all policy "
                    "also denies SCEP's own principal, so revert could not remove it and "
                    "only the account root user could; list the role SCEP runs as",
                )
            ]
        return []

    def describe(self, params: dict[str, Any], conn: AwsConnection, ctx: InjectionContext) -> str:
        bucket = params["bucket"]
        try:
            current = _get_policy(conn.client("s3"), bucket)
        except _BucketGone:
            return f"bucket {bucket!r} does not exist; inject would fail"
        if is_scep_policy(current):
            return f"bucket {bucket!r} already carries SCEP's deny policy; inject would fail"
        exempt = params["exempt_principal_arns"]
        who = f"everyone except {', '.join(exempt)}" if exempt else "everyone"
        before = "replacing its current policy (kept for revert)" if current else "(no policy yet)"
        return (
            f"would deny s3:* on bucket {bucket!r} and its objects to {who} {before}; "
            f"revert restores the previous policy exactly or deletes ours; {_EXPIRY_NOTE}"
        )

    def inject(self, params: dict[str, Any], ctx: InjectionContext) -> dict[str, Any]:
        params, conn = self._prepare(params, ctx)
        s3, bucket = conn.client("s3"), params["bucket"]
        try:
            previous = _get_policy(s3, bucket)
        except _BucketGone:
            raise InjectionError(f"bucket {bucket!r} does not exist") from None
        if is_scep_policy(previous):
            # Recording SCEP's own deny as "previous" would make the bucket stay denied
            # after the later revert of the two.
            raise InjectionError(
                f"bucket {bucket!r} already carries SCEP's deny policy (another fault is "
                "active on it); revert that one first"
            )
        policy = deny_policy(bucket, conn.settings.partition, params["exempt_principal_arns"])
        log.info("%s: denying all access to bucket %s", self.name, bucket)
        with aws_call(f"putting the deny policy on bucket {bucket!r}"):
            s3.put_bucket_policy(Bucket=bucket, Policy=policy)
        return {
            "aws": conn.settings.to_handle(),
            "bucket": bucket,
            "previous_policy": previous,
            "injected_policy": policy,
            "revertible": True,
            "note": f"revert restores previous_policy verbatim, or deletes the policy if it "
            f"was null; {_EXPIRY_NOTE}",
        }

    def revert(self, handle: dict[str, Any], ctx: InjectionContext) -> None:
        """Restore the previous policy, but only while SCEP's deny is still in place.

        Checking first is what makes a repeated revert harmless: once the deny is gone
        (restored by an earlier call, or replaced by an operator) the bucket's policy is
        no longer ours to overwrite.
        """
        bucket = handle["bucket"]
        previous = handle.get("previous_policy")
        s3 = self._reconnect(handle, ctx).client("s3")
        try:
            current = _get_policy(s3, bucket)
        except _BucketGone:
            log.info("%s revert: bucket %s no longer exists", self.name, bucket)
            return
        if not is_scep_policy(current):
            if current != previous:
                log.warning(
                    "%s revert: bucket %s no longer carries SCEP's deny policy but not the "
                    "previous one either; leaving the current policy alone",
                    self.name,
                    bucket,
                )
            return
        from botocore.exceptions import ClientError

        what = f"restoring the policy of bucket {bucket!r}"
        with aws_call(what):
            try:
                if previous is None:
                    s3.delete_bucket_policy(Bucket=bucket)
                else:
                    s3.put_bucket_policy(Bucket=bucket, Policy=previous)
            except ClientError as exc:
                if error_code(exc) == "NoSuchBucket":
                    return
                if error_code(exc) == "AccessDenied":
                    raise InjectionError(
                        f"{what}: access denied; SCEP's principal is not exempt from the "
                        "deny policy. The account root user must delete the bucket policy "
                        "(the previous one is kept in this fault's handle)"
                    ) from None
                raise


# --- Lambda ---------------------------------------------------------------------------

_FUNCTION_RE = re.compile(
    r"^(arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:)?[A-Za-z0-9_-]{1,64}$"
)


class LambdaThrottleParams(Params):
    function_name: str = Field(description="function name or unqualified function ARN")

    @field_validator("function_name")
    @classmethod
    def _function(cls, value: str) -> str:
        if not _FUNCTION_RE.match(value):
            raise ValueError(
                "must be a Lambda function name or unqualified ARN (reserved concurrency "
                "applies to the whole function, not a version or alias)"
            )
        return value


def _reserved_concurrency(lam: Any, function: str) -> int | None:
    """The function's reserved concurrency (None when unset); LookupError if no function."""
    from botocore.exceptions import ClientError

    try:
        response = lam.get_function_concurrency(FunctionName=function)
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise LookupError(function) from None
        with aws_call(f"reading the concurrency of function {function!r}"):
            raise
    value = response.get("ReservedConcurrentExecutions")
    return None if value is None else int(value)


class LambdaThrottleInjector(_CloudInjector):
    """Reserved concurrency 0: every invocation is throttled (429) until revert."""

    name = "cloud.lambda_throttle"
    summary = "Throttle a Lambda function completely (reserved concurrency 0); revertible."
    params_model = LambdaThrottleParams

    def describe(self, params: dict[str, Any], conn: AwsConnection, ctx: InjectionContext) -> str:
        function = params["function_name"]
        try:
            current = _reserved_concurrency(conn.client("lambda"), function)
        except LookupError:
            return f"function {function!r} does not exist; inject would fail"
        if current == 0:
            return f"function {function!r} is already throttled to 0; inject would fail"
        before = "unset" if current is None else str(current)
        return (
            f"would set reserved concurrency of function {function!r} to 0 (now {before}), "
            f"throttling every invocation; revert restores {before}; {_EXPIRY_NOTE}"
        )

    def inject(self, params: dict[str, Any], ctx: InjectionContext) -> dict[str, Any]:
        params, conn = self._prepare(params, ctx)
        lam, function = conn.client("lambda"), params["function_name"]
        try:
            previous = _reserved_concurrency(lam, function)
        except LookupError:
            raise InjectionError(f"function {function!r} does not exist") from None
        if previous == 0:
            # Revert could not tell our 0 from the existing one; and nothing would change.
            raise InjectionError(f"function {function!r} already has reserved concurrency 0")
        log.info("%s: reserved concurrency 0 on %s", self.name, function)
        with aws_call(f"throttling function {function!r}"):
            lam.put_function_concurrency(FunctionName=function, ReservedConcurrentExecutions=0)
        return {
            "aws": conn.settings.to_handle(),
            "function_name": function,
            "previous_reserved_concurrency": previous,
            "revertible": True,
            "note": "revert restores previous_reserved_concurrency, or removes the setting "
            f"if it was null; {_EXPIRY_NOTE}",
        }

    def revert(self, handle: dict[str, Any], ctx: InjectionContext) -> None:
        """Restore the previous setting while the function is still at our 0.

        Any other value means an earlier revert or an operator already changed it, and
        that newer choice wins.
        """
        function = handle["function_name"]
        previous = handle.get("previous_reserved_concurrency")
        lam = self._reconnect(handle, ctx).client("lambda")
        try:
            current = _reserved_concurrency(lam, function)
        except LookupError:
            log.info("%s revert: function %s no longer exists", self.name, function)
            return
        if current != 0:
            return
        from botocore.exceptions import ClientError

        with aws_call(f"restoring the concurrency of function {function!r}"):
            try:
                if previous is None:
                    lam.delete_function_concurrency(FunctionName=function)
                else:
                    lam.put_function_concurrency(
                        FunctionName=function, ReservedConcurrentExecutions=int(previous)
                    )
            except ClientError as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise
