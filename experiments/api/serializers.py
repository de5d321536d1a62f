"""Serializers of the REST API.

Serializers here only shape and check *input* and render *output*; they never save.
Writes go through ``experiments.services`` so that the audit trail and versioning
happen in exactly one place, whichever door (API, admin, CLI) the change came through.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from analysis.models import Finding, MetricSeries
from audit.models import AuditEntry
from experiments.models import Experiment, ExperimentVersion, KillSwitch, Run, RunEvent, Target
from experiments.spec import load_spec_text
from governance.models import Team
from injectors.models import ActiveFault, Agent
from scep.api_params import parse_id

# --- Targets --------------------------------------------------------------------------


def _stamp(value: datetime | None) -> str | None:
    """A stored (aware) time as DRF's DateTimeField renders it in our UTC time zone.

    Why not DRF's field: on a 50-run page its time-zone handling was a tenth of the
    request; the list test holds the two renderings together.
    """
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class TargetSerializer(serializers.ModelSerializer):
    experiments = serializers.IntegerField(source="experiments.count", read_only=True)
    secrets = serializers.JSONField(
        write_only=True,
        required=False,
        help_text=(
            'Credentials, shaped like config (e.g. {"postgres": {"dsn": "..."}}); '
            "each value a string, or env:NAME / file:/path. Write-only: stored encrypted, "
            "never returned. Sending it replaces all of them; {} removes them."
        ),
    )
    secret_keys = serializers.SerializerMethodField(
        help_text="Names of the secrets set (e.g. postgres.dsn), never their values."
    )
    team = serializers.SlugRelatedField(
        slug_field="name",
        queryset=Team.objects.all(),
        required=False,
        help_text="The owning team (default: the default team).",
    )

    class Meta:
        model = Target
        fields = (
            "id",
            "name",
            "description",
            "team",
            "environment",
            "allowed",
            "agent",
            "config",
            "secrets",
            "secret_keys",
            "labels",
            "experiments",
            "created_at",
            "updated_at",
        )
        read_only_fields = ("created_at", "updated_at")

    def get_secret_keys(self, target: Target) -> list[str]:
        from experiments.services.catalog import secret_paths

        return secret_paths(target.secrets)

    def validate_secrets(self, value: Any, path: str = "secrets") -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be an object of named secrets")
        for key, item in value.items():
            if isinstance(item, dict):
                self.validate_secrets(item, f"{path}.{key}")
            elif not isinstance(item, str) or not item:
                raise serializers.ValidationError(
                    f"{path}.{key}: must be a non-empty string (or env:NAME / file:/path)"
                )
        return value

    def validate_config(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be an object")
        for key in ("proxies", "processes"):
            if key in value and not isinstance(value[key], dict):
                raise serializers.ValidationError(f"'{key}' must be an object of named entries")
        return value

    def validate_labels(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be an object")
        return value

    def validate_name(self, value: str) -> str:
        # Experiment specs name their target; a rename would orphan them silently.
        renamed = self.instance is not None and value != self.instance.name
        if renamed and self.instance.experiments.exists():
            raise serializers.ValidationError(
                "cannot rename a target that experiments refer to by name"
            )
        return value


# --- Experiments ----------------------------------------------------------------------


class SpecInputSerializer(serializers.Serializer):
    """The body of experiment create/update/validate.

    Either ``{"spec": {...}}``, ``{"yaml": "<text>"}``, or the spec mapping itself as the
    body (what ``curl -d @spec.json`` naturally sends). ``spec_data`` is the parsed
    mapping, ready for the services.
    """

    spec = serializers.JSONField(required=False, help_text="The spec as a JSON object.")
    yaml = serializers.CharField(
        required=False, trim_whitespace=False, help_text="The spec as YAML (or JSON) text."
    )

    ENVELOPE_KEYS = frozenset({"spec", "yaml"})

    @classmethod
    def wrap(cls, data: Any) -> Any:
        """Accept a bare spec body by wrapping it in the ``spec`` envelope."""
        if isinstance(data, Mapping) and not (cls.ENVELOPE_KEYS & set(data.keys())) and data:
            return {"spec": dict(data)}
        return data

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            raise serializers.ValidationError(
                {"body": ['expected a JSON object: {"spec": {...}} or {"yaml": "..."}']}
            )
        unknown = sorted(set(data.keys()) - self.ENVELOPE_KEYS)
        if unknown:
            raise serializers.ValidationError({key: ["unknown field"] for key in unknown})
        return super().to_internal_value(data)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("spec" in attrs) == ("yaml" in attrs):
            raise serializers.ValidationError("give exactly one of 'spec' or 'yaml'")
        if "yaml" in attrs:
            # SpecError from here is rendered by the exception handler like any 400.
            attrs["spec_data"] = load_spec_text(attrs["yaml"])
        elif isinstance(attrs["spec"], dict):
            attrs["spec_data"] = attrs["spec"]
        else:
            raise serializers.ValidationError({"spec": ["must be an object of spec fields"]})
        if not self.context.get("check_name", True):
            return attrs  # validate-only: the spec may well be an existing experiment's
        name = attrs["spec_data"].get("name")
        clash = Experiment.objects.filter(name=name) if isinstance(name, str) else None
        instance = self.context.get("experiment")
        if clash is not None and instance is not None:
            clash = clash.exclude(pk=instance.pk)
        if clash is not None and clash.exists():
            raise serializers.ValidationError(
                {"name": [f"an experiment named {name!r} already exists"]}
            )
        return attrs

    @property
    def spec_data(self) -> dict[str, Any]:
        return self.validated_data["spec_data"]


class ExperimentSerializer(serializers.ModelSerializer):
    target = serializers.SlugRelatedField(slug_field="name", read_only=True)
    team = serializers.SlugRelatedField(slug_field="name", read_only=True)
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    versions = serializers.IntegerField(source="versions.count", read_only=True)

    class Meta:
        model = Experiment
        fields = (
            "id",
            "name",
            "description",
            "target",
            "team",
            "version",
            "versions",
            "spec",
            "created_by",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields


class ExperimentVersionSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = ExperimentVersion
        fields = ("version", "spec", "created_by", "created_at")
        read_only_fields = fields


class ValidationResultSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    spec = serializers.JSONField(help_text="The normalised spec, as it would be stored.")
    dry_run = serializers.CharField(help_text="What the injector would do, in one sentence.")


# --- Runs -----------------------------------------------------------------------------


class StartRunSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField(
        default=False, help_text="Run every phase but inject nothing (the fault is described)."
    )


class CreateRunSerializer(StartRunSerializer):
    experiment = serializers.CharField(help_text="The experiment's id or name.")

    def validate_experiment(self, value: str) -> Experiment:
        number = parse_id(value)
        lookup = {"pk": number} if number is not None else {"name": value}
        experiment = Experiment.objects.filter(**lookup).first()
        if experiment is None:
            raise serializers.ValidationError(f"no experiment with id or name {value!r}")
        return experiment


class AbortRunSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)


class RunEventSerializer(serializers.ModelSerializer):
    # A plain string in the schema: it takes the run status values, and a second enum of
    # the same choices under another name would make the schema ambiguous.
    phase = serializers.CharField(read_only=True, help_text="The run's status at that moment.")

    class Meta:
        model = RunEvent
        fields = ("at", "kind", "phase", "message", "data")
        read_only_fields = fields


class FindingSerializer(serializers.ModelSerializer):
    class Meta:
        model = Finding
        fields = (
            "id",
            "metric",
            "kind",
            "severity",
            "confidence",
            "title",
            "summary",
            "evidence",
            "created_at",
        )
        read_only_fields = fields


class FaultSerializer(serializers.ModelSerializer):
    target = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = ActiveFault
        fields = (
            "id",
            "run",
            "target",
            "injector",
            "params",
            "intensity",
            "agent",
            "state",
            "handle",
            "created_at",
            "injected_at",
            "expires_at",
            "revert_requested_at",
            "reverted_at",
            "revert_reason",
            "owner_worker",
            "error",
        )
        read_only_fields = fields


class RunTimestampsSerializer(serializers.Serializer):
    """When the run entered each phase (null for phases it never reached)."""

    queued = serializers.DateTimeField(source="created_at")
    started = serializers.DateTimeField(source="started_at", allow_null=True)
    baseline = serializers.DateTimeField(source="baseline_started_at", allow_null=True)
    injected = serializers.DateTimeField(source="injected_at", allow_null=True)
    reverted = serializers.DateTimeField(source="reverted_at", allow_null=True)
    recovery = serializers.DateTimeField(source="recovery_started_at", allow_null=True)
    analysis = serializers.DateTimeField(source="analysis_started_at", allow_null=True)
    finished = serializers.DateTimeField(source="finished_at", allow_null=True)


class RunSerializer(serializers.ModelSerializer):
    """The compact form used in lists."""

    experiment = serializers.SlugRelatedField(slug_field="name", read_only=True)
    experiment_id = serializers.IntegerField(read_only=True)
    started_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    approved_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = Run
        fields = (
            "id",
            "experiment",
            "experiment_id",
            "experiment_version",
            "status",
            "status_reason",
            "verdict",
            "verdict_confidence",
            "dry_run",
            "started_by",
            "approved_by",
            "approved_at",
            "created_at",
            "finished_at",
        )
        read_only_fields = fields

    #: Columns :meth:`rows` reads: the list's fields and nothing heavier (no spec, no
    #: summary), the names through joins instead of one query per run.
    COLUMNS = (
        "id",
        "experiment__name",
        "experiment_id",
        "experiment_version",
        "status",
        "status_reason",
        "verdict",
        "verdict_confidence",
        "dry_run",
        "started_by__username",
        "approved_by__username",
        "approved_at",
        "created_at",
        "finished_at",
    )

    @classmethod
    def rows(cls, values: Any) -> list[dict[str, Any]]:
        """The list rows from ``queryset.values(*COLUMNS)``, exactly as :meth:`to_representation`
        of model instances would render them (a test holds the two together).

        Why: building 50 model instances (with their JSON fields) and going through 14 DRF
        fields each was most of the run list's time; plain dicts cost a fraction of it.
        """
        return [
            {
                "id": v["id"],
                "experiment": v["experiment__name"],
                "experiment_id": v["experiment_id"],
                "experiment_version": v["experiment_version"],
                "status": v["status"],
                "status_reason": v["status_reason"],
                "verdict": v["verdict"],
                "verdict_confidence": v["verdict_confidence"],
                "dry_run": v["dry_run"],
                "started_by": v["started_by__username"],
                "approved_by": v["approved_by__username"],
                "approved_at": _stamp(v["approved_at"]),
                "created_at": _stamp(v["created_at"]),
                "finished_at": _stamp(v["finished_at"]),
            }
            for v in values
        ]


def _percentile(ordered: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on sorted data."""
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summarise_values(values: list[Any]) -> dict[str, float | int | None]:
    """n, mean, p50, p95 and max of the finite numbers among ``values``."""
    nums = sorted(
        float(v)
        for v in values
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    )
    if not nums:
        return {"n": 0, "mean": None, "p50": None, "p95": None, "max": None}
    return {
        "n": len(nums),
        "mean": sum(nums) / len(nums),
        "p50": _percentile(nums, 0.50),
        "p95": _percentile(nums, 0.95),
        "max": nums[-1],
    }


def series_summary(run: Run) -> dict[str, dict[str, dict[str, float | int | None]]]:
    """``{metric: {phase: {n, mean, p50, p95, max}}}`` from the run's stored chunks."""
    joined: dict[str, dict[str, list[Any]]] = {}
    chunks = MetricSeries.objects.filter(run=run).order_by("metric", "phase", "seq", "id")
    for metric, phase, values in chunks.values_list("metric", "phase", "values"):
        joined.setdefault(metric, {}).setdefault(phase, []).extend(values or [])
    return {
        metric: {phase: summarise_values(values) for phase, values in phases.items()}
        for metric, phases in joined.items()
    }


class RunDetailSerializer(RunSerializer):
    """Everything about one run: its timeline, the numbers, the findings and its faults."""

    timestamps = RunTimestampsSerializer(source="*", read_only=True)
    events = RunEventSerializer(many=True, read_only=True)
    findings = FindingSerializer(many=True, read_only=True)
    faults = FaultSerializer(many=True, read_only=True)
    series_summary = serializers.SerializerMethodField()

    class Meta(RunSerializer.Meta):
        fields = (
            *RunSerializer.Meta.fields,
            "verdict_reason",
            "spec",
            "worker",
            "heartbeat_at",
            "abort_requested_at",
            "abort_reason",
            "summary",
            "timestamps",
            "events",
            "series_summary",
            "findings",
            "faults",
        )
        read_only_fields = fields

    @extend_schema_field(
        {
            "type": "object",
            "description": "metric → phase → {n, mean, p50, p95, max}",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "properties": {
                        "n": {"type": "integer"},
                        "mean": {"type": "number", "nullable": True},
                        "p50": {"type": "number", "nullable": True},
                        "p95": {"type": "number", "nullable": True},
                        "max": {"type": "number", "nullable": True},
                    },
                },
            },
        }
    )
    def get_series_summary(self, run: Run) -> dict[str, Any]:
        return series_summary(run)


# --- Kill switch ----------------------------------------------------------------------


class KillSwitchSerializer(serializers.ModelSerializer):
    class Meta:
        model = KillSwitch
        fields = ("engaged", "engaged_at", "engaged_by", "reason")
        read_only_fields = fields


class EngageSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)


class EngageResultSerializer(KillSwitchSerializer):
    aborted_runs = serializers.IntegerField(read_only=True)
    reverted_faults = serializers.IntegerField(read_only=True)

    class Meta(KillSwitchSerializer.Meta):
        fields = (*KillSwitchSerializer.Meta.fields, "aborted_runs", "reverted_faults")
        read_only_fields = fields


# --- Agents, fault types, audit -------------------------------------------------------


class AgentSerializer(serializers.ModelSerializer):
    online = serializers.SerializerMethodField()

    class Meta:
        model = Agent
        fields = ("id", "name", "hostname", "pid", "started_at", "last_heartbeat", "online", "info")
        read_only_fields = fields

    def get_online(self, agent: Agent) -> bool:
        """Online while its last heartbeat is younger than SCEP_AGENT_OFFLINE_AFTER_S."""
        if agent.last_heartbeat is None:
            return False
        age = (timezone.now() - agent.last_heartbeat).total_seconds()
        return age <= settings.SCEP_AGENT_OFFLINE_AFTER_S


class FaultTypeSerializer(serializers.Serializer):
    name = serializers.CharField()
    family = serializers.CharField()
    summary = serializers.CharField()
    host_local = serializers.BooleanField()
    params_schema = serializers.SerializerMethodField()

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_params_schema(self, injector: Any) -> dict[str, Any]:
        return injector.params_model.model_json_schema()


class AuditEntrySerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_name", read_only=True)

    class Meta:
        model = AuditEntry
        fields = (
            "id",
            "at",
            "actor",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "changes",
            "source",
        )
        read_only_fields = fields
