"""Safety checks a run must pass before anything is collected or injected."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings

from experiments.choices import RunStatus
from experiments.models import KillSwitch, Run, Target
from experiments.spec import ExperimentSpec, SpecError, validate_spec
from governance.services import PolicyViolation, enforce_policy
from injectors.models import ActiveFault, FaultState
from injectors.services import acts_on_host, agent_is_online

__all__ = ["PreflightError", "preflight"]

#: Phases in which a run may have its fault in place on the target.
FAULTING = (RunStatus.INJECTING, RunStatus.DURING, RunStatus.REVERTING)


class PreflightError(Exception):
    """A safety rule refuses the run; the message names the rule."""


def preflight(
    run: Run, spec: ExperimentSpec, target: Target, *, now: datetime | None = None
) -> None:
    """Raise PreflightError naming the first rule the run breaks; ``now`` for tests."""
    if KillSwitch.objects.filter(pk=1, engaged=True).exists():
        raise PreflightError("kill switch is engaged")
    if not target.allowed:
        raise PreflightError(f"target {target.name!r} is not allowed for experiments")
    if target.environment not in settings.SCEP_ALLOWED_ENVIRONMENTS:
        raise PreflightError(
            f"environment {target.environment!r} of target {target.name!r} is not in "
            f"SCEP_ALLOWED_ENVIRONMENTS ({', '.join(settings.SCEP_ALLOWED_ENVIRONMENTS)})"
        )
    try:  # caps and the target's config may have changed since the spec was saved
        validate_spec(
            run.spec,
            target_config=target.connection_config(resolve=False),
            target_labels=target.labels,
        )
    except SpecError as exc:
        raise PreflightError(f"spec no longer valid: {exc}") from None
    try:  # the environment's safety policy (governance), dry runs included
        enforce_policy(
            spec,
            target.environment,
            approved=run.dry_run or run.approved_by_id is not None,
            now=now,
        )
    except PolicyViolation as exc:
        raise PreflightError(str(exc)) from None
    if run.dry_run:
        return
    if acts_on_host(spec.fault.type) and not agent_is_online(target.agent):
        raise PreflightError(
            f"agent {target.agent!r} of target {target.name!r} is offline "
            f"(no heartbeat in the last {settings.SCEP_AGENT_OFFLINE_AFTER_S:g} s); "
            f"start it with: scep agent --name {target.agent}"
        )
    busy = ActiveFault.objects.filter(target=target, state__in=FaultState.open())
    if busy.exists():
        fault = busy.first()
        raise PreflightError(
            f"target {target.name!r} already has an active fault "
            f"({fault.injector}, ledger row {fault.pk})"
        )
    other = (
        Run.objects.filter(experiment__target=target, status__in=FAULTING)
        .exclude(pk=run.pk)
        .first()
    )
    if other is not None:
        raise PreflightError(f"run {other.pk} is faulting target {target.name!r} right now")
