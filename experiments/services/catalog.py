"""Creating and changing targets and experiments (with versioning and audit)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from audit.services import record
from experiments.models import Experiment, ExperimentVersion, Target
from experiments.spec import dump_spec, validate_spec

__all__ = [
    "create_experiment",
    "create_target",
    "delete_experiment",
    "delete_target",
    "preview_experiment",
    "update_experiment",
    "update_target",
]

TARGET_FIELDS = ("name", "description", "environment", "allowed", "agent", "config", "labels")


def _diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {
        key: {"before": before.get(key), "after": after.get(key)}
        for key in after
        if before.get(key) != after.get(key)
    }


def secret_paths(secrets: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the secrets set (``postgres.dsn``), never their values: what the
    API shows and the audit trail records about credentials."""
    paths: list[str] = []
    for key, value in sorted((secrets or {}).items()):
        name = f"{prefix}.{key}" if prefix else str(key)
        paths.extend(secret_paths(value, name) if isinstance(value, dict) else [name])
    return paths


def _secrets_change(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {"before": secret_paths(before), "after": secret_paths(after), "values": "redacted"}


@transaction.atomic
def create_target(*, actor: Any, source: str, **fields: Any) -> Target:
    target = Target.objects.create(**fields)
    changes = {k: {"before": None, "after": getattr(target, k)} for k in TARGET_FIELDS}
    changes["team"] = {"before": None, "after": target.team.name}
    if target.secrets:
        changes["secrets"] = _secrets_change({}, target.secrets)
    record(actor=actor, action="target.create", source=source, obj=target, changes=changes)
    return target


@transaction.atomic
def update_target(target: Target, *, actor: Any, source: str, **fields: Any) -> Target:
    before = {k: getattr(target, k) for k in TARGET_FIELDS}
    secrets_before = target.secrets
    team_before = target.team
    for key, value in fields.items():
        setattr(target, key, value)
    target.save()
    changes = _diff(before, {k: getattr(target, k) for k in TARGET_FIELDS})
    if target.team_id != team_before.pk:
        changes["team"] = {"before": team_before.name, "after": target.team.name}
        # Experiments follow their target into its new team.
        target.experiments.update(team=target.team)
    if "secrets" in fields and fields["secrets"] != secrets_before:
        changes["secrets"] = _secrets_change(secrets_before, target.secrets)
    record(actor=actor, action="target.update", source=source, obj=target, changes=changes)
    return target


@transaction.atomic
def delete_target(target: Target, *, actor: Any, source: str) -> None:
    record(actor=actor, action="target.delete", source=source, obj=target)
    target.delete()


def _validated(spec_data: dict[str, Any] | str, target: Target | None) -> dict[str, Any]:
    config = target.connection_config(resolve=False) if target is not None else None
    labels = target.labels if target is not None else None
    return dump_spec(validate_spec(spec_data, target_config=config, target_labels=labels))


def resolve_target(spec_data: dict[str, Any]) -> Target:
    from experiments.spec import SpecError
    from injectors.base import FieldError

    name = spec_data.get("target")
    target = Target.objects.filter(name=name).first() if isinstance(name, str) else None
    if target is None:
        known = ", ".join(Target.objects.values_list("name", flat=True)) or "none registered"
        raise SpecError([FieldError("target", f"unknown target {name!r}; known: {known}")])
    return target


def _ensure_name_free(name: str, exclude: Experiment | None = None) -> None:
    from experiments.spec import SpecError
    from injectors.base import FieldError

    taken = Experiment.objects.filter(name=name)
    if exclude is not None:
        taken = taken.exclude(pk=exclude.pk)
    if taken.exists():
        raise SpecError([FieldError("name", f"an experiment named {name!r} already exists")])


def preview_experiment(spec_data: dict[str, Any] | str) -> dict[str, Any]:
    """Validate a spec fully against its target and describe what its fault would do,
    storing nothing: the same checks, in the same order, as ``create_experiment``."""
    import time

    from experiments.spec import SpecError, load_spec_text
    from injectors.base import FieldError, InjectionContext, InjectorError
    from injectors.registry import get_injector

    data = load_spec_text(spec_data) if isinstance(spec_data, str) else spec_data
    validate_spec(data)
    target = resolve_target(data)
    config = target.connection_config(resolve=False)
    spec = validate_spec(data, target_config=config, target_labels=target.labels)
    ctx = InjectionContext(
        fault_id=None,
        target_name=target.name,
        target_config=config,
        intensity=spec.intensity,
        expires_at=time.time() + spec.duration,
    )
    try:
        sentence = get_injector(spec.fault.type).dry_run(spec.fault.params, ctx)
    except InjectorError as exc:
        raise SpecError([FieldError("fault", str(exc))]) from None
    return {"valid": True, "spec": dump_spec(spec), "dry_run": sentence}


@transaction.atomic
def create_experiment(spec_data: dict[str, Any] | str, *, actor: Any, source: str) -> Experiment:
    """Validate the spec against its target and store it as version 1."""
    from experiments.spec import load_spec_text

    data = load_spec_text(spec_data) if isinstance(spec_data, str) else spec_data
    validate_spec(data)  # shape errors first, before the target lookup
    target = resolve_target(data)
    spec = _validated(data, target)
    _ensure_name_free(spec["name"])
    user = actor if getattr(actor, "pk", None) else None
    experiment = Experiment.objects.create(
        name=spec["name"],
        description=spec["description"],
        target=target,
        team_id=target.team_id,
        spec=spec,
        version=1,
        created_by=user,
    )
    ExperimentVersion.objects.create(experiment=experiment, version=1, spec=spec, created_by=user)
    record(
        actor=actor,
        action="experiment.create",
        source=source,
        obj=experiment,
        changes={"spec": {"before": None, "after": spec}},
    )
    return experiment


@transaction.atomic
def update_experiment(
    experiment: Experiment, spec_data: dict[str, Any] | str, *, actor: Any, source: str
) -> Experiment:
    """Store a changed spec as a new version; an identical spec changes nothing."""
    from experiments.spec import load_spec_text

    data = load_spec_text(spec_data) if isinstance(spec_data, str) else spec_data
    validate_spec(data)
    target = resolve_target(data)
    spec = _validated(data, target)
    if spec == experiment.spec:
        return experiment
    _ensure_name_free(spec["name"], exclude=experiment)
    before = experiment.spec
    user = actor if getattr(actor, "pk", None) else None
    experiment.version += 1
    experiment.spec = spec
    experiment.name = spec["name"]
    experiment.description = spec["description"]
    experiment.target = target
    experiment.team_id = target.team_id
    experiment.save()
    ExperimentVersion.objects.create(
        experiment=experiment, version=experiment.version, spec=spec, created_by=user
    )
    record(
        actor=actor,
        action="experiment.update",
        source=source,
        obj=experiment,
        changes={"spec": {"before": before, "after": spec}, "version": experiment.version},
    )
    return experiment


@transaction.atomic
def delete_experiment(experiment: Experiment, *, actor: Any, source: str) -> None:
    record(actor=actor, action="experiment.delete", source=source, obj=experiment)
    experiment.delete()
