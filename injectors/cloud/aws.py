"""Reaching AWS: the target's ``config["aws"]``, sessions, and secret-free error texts.

Credentials deliberately have no place in SCEP's data. They come only from boto3's normal
chain (environment variables, shared config/credentials files and named profiles,
container or instance roles), optionally followed by an STS ``AssumeRole`` into
``role_arn``. Target configs, fault params and handles are stored in the database, shown
in the UI and written to audit logs, so a key placed there would leak; every place that
could accept one refuses it with an explanation instead of silently dropping it.

Handles carry only the non-secret connection settings (region, profile *name*, endpoint,
role ARN) so a revert reaches the same account and region even if the target's config
was edited while the fault was active.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from injectors.base import FieldError, InjectionError, InvalidParams

__all__ = [
    "AWS_KEYS",
    "AwsConnection",
    "AwsSettings",
    "aws_call",
    "aws_config_errors",
    "credential_key_errors",
    "error_code",
    "partition_for",
    "scrub",
    "settings_from_target",
]

log = logging.getLogger(__name__)

#: The only keys ``config["aws"]`` may hold.
AWS_KEYS = ("region", "profile", "endpoint_url", "role_arn")

#: Key names that smell like credentials, compared after lower-casing and turning "-"
#: into "_". Refused wherever they appear, with a reason rather than "unknown field".
_CREDENTIAL_KEYS = frozenset(
    {
        "access_key",
        "access_key_id",
        "aws_access_key",
        "aws_access_key_id",
        "secret_key",
        "secret_access_key",
        "aws_secret_key",
        "aws_secret_access_key",
        "session_token",
        "aws_session_token",
        "security_token",
        "aws_security_token",
        "credentials",
        "password",
    }
)

_CREDENTIAL_REASON = (
    "not allowed: SCEP never takes AWS credentials from fault params or target config "
    "(both are stored, displayed and audited); provide them through the environment, "
    "an AWS profile (aws.profile) or an assumable role (aws.role_arn)"
)

_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_PROFILE_RE = re.compile(r"^[\w.+@-]{1,128}$")

#: Access key ids (long-term AKIA…, temporary ASIA…) and anything labelled as a secret,
#: token or signature. Error texts pass through :func:`scrub` before anyone sees them.
_SECRET_PATTERNS = (
    re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{12,}\b"),
    re.compile(
        r"(?i)\b(secret[_ ]?access[_ ]?key|secret|session[_ ]?token|security[_ ]?token|"
        r"x-amz-security-token|signature|credential)(\s*[=:]\s*)[^\s,;&'\"]+"
    ),
)

#: Timeouts and retries for every client: a dead endpoint must fail a dry run in seconds,
#: and throttling of the control plane is retried the way AWS recommends.
_CLIENT_CONFIG = {
    "connect_timeout": 5,
    "read_timeout": 30,
    "retries": {"max_attempts": 4, "mode": "standard"},
}


def _norm(key: str) -> str:
    return key.strip().lower().replace("-", "_")


def credential_key_errors(mapping: Any, prefix: str = "") -> list[FieldError]:
    """One error per credential-looking key in ``mapping`` (values are never echoed)."""
    if not isinstance(mapping, Mapping):
        return []
    return [
        FieldError(f"{prefix}{key}", _CREDENTIAL_REASON)
        for key in mapping
        if isinstance(key, str) and _norm(key) in _CREDENTIAL_KEYS
    ]


def _endpoint_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return "must be a non-empty URL string"
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host"
    if parts.username is not None or parts.password is not None:
        # Never repeat the URL here: the user part is exactly what must not be logged.
        return "must not contain user information (credentials do not belong in URLs)"
    if parts.query or parts.fragment:
        return "must not contain a query string or fragment"
    return None


def aws_config_errors(target_config: Mapping[str, Any] | None) -> list[FieldError]:
    """Problems with the target's ``config["aws"]``, paths like ``aws.region``.

    Exposed separately from the injectors so the target API can reject a bad (or
    secret-bearing) config when it is saved, not only when a cloud fault is planned.
    """
    aws = (target_config or {}).get("aws")
    if aws is None:
        return [
            FieldError(
                "aws",
                'the target has no AWS settings: cloud faults need config["aws"] with at '
                "least a region",
            )
        ]
    if not isinstance(aws, Mapping):
        return [FieldError("aws", "must be a mapping of region, profile, endpoint_url, role_arn")]
    errors = credential_key_errors(aws, "aws.")
    flagged = {e.path for e in errors}
    for key in aws:
        path = f"aws.{key}"
        if path not in flagged and key not in AWS_KEYS:
            errors.append(FieldError(path, f"unknown field; allowed: {', '.join(AWS_KEYS)}"))
    region = aws.get("region")
    if region is None:
        errors.append(FieldError("aws.region", "required (e.g. eu-west-1)"))
    elif not isinstance(region, str) or not _REGION_RE.match(region):
        errors.append(FieldError("aws.region", "must be an AWS region name such as eu-west-1"))
    profile = aws.get("profile")
    if profile is not None and (not isinstance(profile, str) or not _PROFILE_RE.match(profile)):
        errors.append(FieldError("aws.profile", "must be a profile name (letters, digits, ._-)"))
    if aws.get("endpoint_url") is not None:
        problem = _endpoint_problem(aws["endpoint_url"])
        if problem:
            errors.append(FieldError("aws.endpoint_url", problem))
    role = aws.get("role_arn")
    if role is not None and (not isinstance(role, str) or not _ROLE_ARN_RE.match(role)):
        errors.append(
            FieldError("aws.role_arn", "must be an IAM role ARN: arn:aws:iam::<account>:role/…")
        )
    return errors


def partition_for(region: str) -> str:
    """The ARN partition of a region; bucket ARNs in policies must use the right one."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


@dataclass(frozen=True)
class AwsSettings:
    """Where and as whom to call AWS. Holds no secret, so it may go into handles."""

    region: str
    profile: str | None = None
    endpoint_url: str | None = None
    role_arn: str | None = None

    @property
    def partition(self) -> str:
        return partition_for(self.region)

    @property
    def is_real_aws(self) -> bool:
        """True without an endpoint override, i.e. when a mistake costs real resources."""
        return self.endpoint_url is None

    def to_handle(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> AwsSettings:
        return cls(
            region=str(data["region"]),
            profile=data.get("profile"),
            endpoint_url=data.get("endpoint_url"),
            role_arn=data.get("role_arn"),
        )

    def describe(self) -> str:
        parts = [f"region {self.region}"]
        if self.endpoint_url:
            parts.append(f"endpoint {self.endpoint_url}")
        if self.profile:
            parts.append(f"profile {self.profile!r}")
        if self.role_arn:
            parts.append(f"role {self.role_arn}")
        return ", ".join(parts)


def settings_from_target(target_config: Mapping[str, Any] | None) -> AwsSettings:
    """Validated settings from the target config; raise InvalidParams naming ``aws.*``."""
    errors = aws_config_errors(target_config)
    if errors:
        raise InvalidParams(errors)
    return AwsSettings.from_mapping((target_config or {})["aws"])


def scrub(text: str) -> str:
    """Blank out anything in ``text`` that looks like a key id, secret or signature."""
    text = _SECRET_PATTERNS[0].sub("[redacted]", text)
    return _SECRET_PATTERNS[1].sub(lambda m: f"{m.group(1)}{m.group(2)}[redacted]", text)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError (``""`` for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _describe_exception(exc: BaseException) -> str:
    code = error_code(exc)
    if code:
        message = getattr(exc, "response", {}).get("Error", {}).get("Message") or ""
        operation = getattr(exc, "operation_name", "") or "AWS call"
        text = f"{operation} failed with {code}" + (f": {message}" if message else "")
    else:
        text = f"{type(exc).__name__}: {exc}"
    return scrub(text)


@contextmanager
def aws_call(what: str) -> Iterator[None]:
    """Turn boto3/botocore failures into an InjectionError with a scrubbed message.

    ``from None`` matters: the agent stores ``str(exc)`` on the ledger and loggers print
    chained exceptions, and botocore's originals can quote request details.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise InjectionError(f"{what}: {_describe_exception(exc)}") from None


class _UniquePaths(list):
    """A search-path list that ignores repeats (see :func:`_shared_loader`)."""

    def append(self, item: Any) -> None:
        if item not in self:
            super().append(item)


@functools.cache
def _shared_loader() -> Any:
    """One botocore data loader for every session this process opens.

    Each new session would otherwise parse the service model again (EC2's is several
    MB of JSON: about half a second per inject or revert). boto3 appends its own data
    directory to the loader's search path on every session, hence the de-duplicating
    list. A concurrent first load may parse a file twice; that costs time, not safety.
    """
    from botocore.loaders import create_loader

    loader = create_loader()
    loader._search_paths = _UniquePaths(loader.search_paths)
    return loader


def _new_session(**kwargs: Any) -> Any:
    import boto3
    import botocore.session

    core = botocore.session.get_session()
    core.register_component("data_loader", _shared_loader())
    return boto3.Session(botocore_session=core, **kwargs)


@dataclass
class AwsConnection:
    """A lazily created boto3 session and its clients for one inject/revert/dry run.

    A fresh connection per call is intended: a revert may run hours later in another
    process, and assumed-role credentials would have expired by then anyway.
    """

    settings: AwsSettings
    session_name: str = "scep"
    _session: Any = field(default=None, init=False, repr=False)
    _clients: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def _make_session(self) -> Any:
        with aws_call("opening an AWS session"):
            base = _new_session(
                profile_name=self.settings.profile, region_name=self.settings.region
            )
            if not self.settings.role_arn:
                return base
            sts = base.client("sts", endpoint_url=self.settings.endpoint_url, **self._config())
            creds = sts.assume_role(
                RoleArn=self.settings.role_arn,
                RoleSessionName=self.session_name[:64],
                DurationSeconds=900,
            )["Credentials"]
            # The temporary keys live only in this session object, never in a handle.
            return _new_session(
                aws_access_key_id=creds["AccessKeyId"],
                aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds["SessionToken"],
                region_name=self.settings.region,
            )

    @staticmethod
    def _config() -> dict[str, Any]:
        from botocore.config import Config

        return {"config": Config(**_CLIENT_CONFIG)}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            if self._session is None:
                self._session = self._make_session()
            with aws_call(f"creating the {service} client"):
                self._clients[service] = self._session.client(
                    service, endpoint_url=self.settings.endpoint_url, **self._config()
                )
        return self._clients[service]
