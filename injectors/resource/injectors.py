"""Resource faults: CPU, memory, disk space and disk I/O pressure on the target's host.

Each fault is one detached stressor process tree (see :mod:`injectors.resource.stressors`)
that ends by itself at the fault's ``expires_at``, even if the agent dies, and that
revert terminates early. ``stress-ng`` does the work when installed (``backend: auto``,
the default), because it is a well-understood load generator; the built-in worker
(:mod:`injectors.resource.worker`) keeps every fault available on hosts without it.
``resource.disk_fill`` always uses the built-in worker: stress-ng has no "hold exactly
this much space" stressor.

``intensity`` scales the amount: ``ceil(amount × intensity)``, at least 1, applied to
``workers`` for ``resource.cpu`` and ``resource.disk_io`` and to ``mib`` for
``resource.memory`` and ``resource.disk_fill``. Percentages (``load_percent``) are left
alone, so a half-intensity CPU fault runs half the workers at the full duty cycle.
"""

from __future__ import annotations

import shlex
import shutil
import time
from abc import abstractmethod
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import psutil
from pydantic import Field, field_validator

from injectors.base import InjectionContext, InjectionError, Injector, Params
from injectors.resource import stressors
from injectors.resource.stressors import STRESS_NG, Plan
from injectors.resource.worker import MIB

__all__ = [
    "CpuInjector",
    "CpuParams",
    "DiskFillInjector",
    "DiskFillParams",
    "DiskIoInjector",
    "DiskIoParams",
    "MemoryInjector",
    "MemoryParams",
]

Backend = Literal["auto", "stress-ng", "builtin"]


def _absolute(value: str) -> str:
    if not value or not Path(value).is_absolute():
        raise ValueError("must be an absolute directory path")
    return str(Path(value))


class CpuParams(Params):
    """``workers`` busy loops, each busy ``load_percent`` % of every 100 ms."""

    workers: int = Field(1, ge=1, le=256)
    load_percent: int = Field(100, ge=1, le=100)
    backend: Backend = "auto"


class MemoryParams(Params):
    """``mib`` MiB kept resident; refused if it would leave under ``keep_available_mib``."""

    mib: int = Field(ge=1, le=1024 * 1024)
    keep_available_mib: int = Field(256, ge=0)
    backend: Backend = "auto"


class _DiskParams(Params):
    path: str
    keep_free_percent: float = Field(10.0, ge=0.0, lt=100.0)
    keep_free_mib: int = Field(500, ge=0)

    @field_validator("path")
    @classmethod
    def _path_is_absolute(cls, value: str) -> str:
        return _absolute(value)


class DiskFillParams(_DiskParams):
    """One file of ``mib`` MiB under ``path`` (always the built-in worker)."""

    mib: int = Field(ge=1, le=64 * 1024 * 1024)


class DiskIoParams(_DiskParams):
    """``workers`` writers, each writing ``mib`` MiB then fsync, over and over."""

    workers: int = Field(1, ge=1, le=64)
    mib: int = Field(64, ge=1, le=64 * 1024)
    backend: Backend = "auto"


class _ResourceInjector(Injector):
    """Shared dry run / inject / revert; subclasses only say what to start."""

    family = "resource"

    @abstractmethod
    def plan(self, params: dict[str, Any], ctx: InjectionContext, tag: str) -> Plan:
        """Decide backend and arguments; raise InjectionError if it is unsafe to start.

        ``tag`` names the fault's files, so revert can tell them from anybody else's.
        """

    def dry_run(self, params: dict[str, Any], ctx: InjectionContext) -> str:
        tag = "scep-<tag>"
        try:
            stressors.remaining_seconds(ctx.expires_at)
            plan = self.plan(params, ctx, tag)
        except InjectionError as exc:
            return f"{self.name}: inject would fail: {exc}"
        command = stressors.worker_command(plan, ctx.expires_at, tag)
        at = datetime.fromtimestamp(ctx.expires_at, UTC).isoformat(timespec="seconds")
        paths = f" and deletes {', '.join(plan.paths)}" if plan.paths else ""
        return (
            f"{self.name}: would start {plan.summary} with backend {plan.backend} as a "
            f"detached session: {shlex.join(command)}; it stops by itself at {at} "
            f"(in {ctx.expires_at - time.time():.1f} s) even if the agent dies; "
            f"revert terminates the session{paths}"
        )

    def inject(self, params: dict[str, Any], ctx: InjectionContext) -> dict[str, Any]:
        stressors.remaining_seconds(ctx.expires_at)
        tag = stressors.new_tag()
        return stressors.launch(self.plan(params, ctx, tag), ctx.expires_at, tag)

    def revert(self, handle: dict[str, Any], ctx: InjectionContext) -> None:
        """Terminate the stressor and delete its files; harmless after expiry or twice."""
        stressors.stop(handle)


class CpuInjector(_ResourceInjector):
    name = "resource.cpu"
    summary = "Load the CPUs: N workers busy X % of the time, until expiry."
    params_model = CpuParams

    def plan(self, params: dict[str, Any], ctx: InjectionContext, tag: str) -> Plan:
        workers = stressors.scaled(int(params.get("workers", 1)), ctx.intensity)
        load = int(params.get("load_percent", 100))
        backend = stressors.pick_backend(params.get("backend", "auto"))
        if backend == STRESS_NG:
            args = ["--cpu", str(workers), "--cpu-load", str(load)]
        else:
            args = ["--workers", str(workers), "--load", str(load)]
        return Plan(
            backend,
            "cpu",
            args,
            f"{workers} CPU worker(s) at a {load} % duty cycle",
            amounts={"workers": workers, "load_percent": load},
        )


class MemoryInjector(_ResourceInjector):
    name = "resource.memory"
    summary = "Hold X MiB of resident memory (every page written), until expiry."
    params_model = MemoryParams

    def plan(self, params: dict[str, Any], ctx: InjectionContext, tag: str) -> Plan:
        mib = stressors.scaled(int(params["mib"]), ctx.intensity)
        keep = int(params.get("keep_available_mib", 256))
        available = psutil.virtual_memory().available
        if available - mib * MIB < keep * MIB:
            raise InjectionError(
                f"refusing to take {mib} MiB: {available // MIB} MiB is available and "
                f"keep_available_mib is {keep} (the OOM killer would pick its own victims)"
            )
        backend = stressors.pick_backend(params.get("backend", "auto"))
        if backend == STRESS_NG:
            # --vm-keep + --vm-hang 0: map and dirty once, then sleep holding it (no CPU);
            # --oomable: if the OOM killer takes it, do not respawn and fight it.
            args = [
                *("--vm", "1", "--vm-bytes", f"{mib}m", "--vm-keep", "--vm-populate"),
                *("--vm-hang", "0", "--oomable"),
            ]
        else:
            args = ["--mib", str(mib)]
        return Plan(
            backend,
            "memory",
            args,
            f"{mib} MiB of resident memory",
            amounts={"mib": mib},
            ready_timeout=10.0 + mib / 200.0,  # touching pages runs at several GiB/s
        )


def _space_or_refuse(params: dict[str, Any], needed: int) -> stressors.SpaceCheck:
    check = stressors.check_space(
        params["path"], needed, float(params["keep_free_percent"]), int(params["keep_free_mib"])
    )
    if not check.ok:
        raise InjectionError(f"refusing: not enough free space ({check.describe()})")
    return check


class DiskFillInjector(_ResourceInjector):
    name = "resource.disk_fill"
    summary = "Occupy X MiB of disk under a path with one file, removed at expiry or revert."
    params_model = DiskFillParams

    def plan(self, params: dict[str, Any], ctx: InjectionContext, tag: str) -> Plan:
        mib = stressors.scaled(int(params["mib"]), ctx.intensity)
        check = _space_or_refuse(params, mib * MIB)
        file = str(Path(params["path"]) / f"{tag}-fill.dat")
        return Plan(
            "builtin",
            "fill",
            ["--file", file, "--mib", str(mib), "--keep-free-bytes", str(check.margin)],
            f"a {mib} MiB file {file} ({check.describe()})",
            paths=[file],
            amounts={"mib": mib, "file": file},
            ready_timeout=30.0 + mib / 50.0,  # only matters where fallocate is unsupported
        )


class DiskIoInjector(_ResourceInjector):
    name = "resource.disk_io"
    summary = "Write and fsync files under a path in a loop (N workers × X MiB), until expiry."
    params_model = DiskIoParams

    def plan(self, params: dict[str, Any], ctx: InjectionContext, tag: str) -> Plan:
        workers = stressors.scaled(int(params.get("workers", 1)), ctx.intensity)
        mib = int(params.get("mib", 64))
        check = _space_or_refuse(params, workers * mib * MIB)
        directory = str(Path(params["path"]) / f"{tag}-io")
        backend = stressors.pick_backend(params.get("backend", "auto"))
        if backend == STRESS_NG:
            args = [
                *("--hdd", str(workers), "--hdd-bytes", f"{mib}m", "--hdd-write-size", "1m"),
                *("--hdd-opts", "fsync", "--temp-path", directory),
            ]
        else:
            args = ["--dir", directory, "--workers", str(workers), "--mib", str(mib)]
        return Plan(
            backend,
            "io",
            args,
            f"{workers} writer(s) of {mib} MiB each in {directory} ({check.describe()})",
            paths=[directory],
            amounts={"workers": workers, "mib": mib, "directory": directory},
        )

    def inject(self, params: dict[str, Any], ctx: InjectionContext) -> dict[str, Any]:
        """Create the scratch directory first: stress-ng requires its temp path to exist."""
        stressors.remaining_seconds(ctx.expires_at)
        tag = stressors.new_tag()
        plan = self.plan(params, ctx, tag)
        directory = Path(plan.paths[0])
        directory.mkdir(mode=0o700)
        try:
            return stressors.launch(plan, ctx.expires_at, tag)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
