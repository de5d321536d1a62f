"""Finding the processes a process fault applies to.

Parameters select by exactly one of ``pid``, ``name`` (psutil's process name, exact),
``cmdline`` (a regular expression searched in the space-joined command line) or
``process`` (an entry of the target's ``config["processes"]``, itself holding one of the
first three). Selection is deliberately conservative: pid 1, the agent itself, its
ancestors and SCEP's own pause watchdogs are never candidates, because signalling any of
them would take down the machinery that is supposed to end the fault.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any

import psutil
from pydantic import field_validator, model_validator

from injectors.base import FieldError, InjectionError, InvalidParams, Params
from injectors.process.watchdog import MODULE as WATCHDOG_MODULE

__all__ = [
    "DIRECT_KEYS",
    "SELECTOR_KEYS",
    "ProcessInfo",
    "ProcessSelectorParams",
    "Selector",
    "choose",
    "find_matching",
    "protected_pids",
    "resolve_selector",
    "select_processes",
]

SELECTOR_KEYS = ("pid", "name", "cmdline", "process")
DIRECT_KEYS = ("pid", "name", "cmdline")


def _check_pid(pid: Any) -> int:
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise ValueError("must be an integer")
    if pid < 2:
        # 0 and negative pids address whole process groups; 1 is init.
        raise ValueError(f"refusing to signal pid {pid}: it is init or a process group")
    return pid


def _check_regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return pattern


def _check_name(name: str) -> str:
    if not name:
        raise ValueError("must not be empty")
    return name


class ProcessSelectorParams(Params):
    """Shared selector fields; exactly one must be given."""

    pid: int | None = None
    name: str | None = None
    cmdline: str | None = None
    process: str | None = None

    @field_validator("pid")
    @classmethod
    def _pid_is_safe(cls, value: int | None) -> int | None:
        return None if value is None else _check_pid(value)

    @field_validator("name", "process")
    @classmethod
    def _not_empty(cls, value: str | None) -> str | None:
        return None if value is None else _check_name(value)

    @field_validator("cmdline")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        return None if value is None else _check_regex(value)

    @model_validator(mode="after")
    def _exactly_one_selector(self) -> ProcessSelectorParams:
        given = [key for key in SELECTOR_KEYS if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(f"exactly one of {', '.join(SELECTOR_KEYS)} is required")
        return self


@dataclass(frozen=True)
class Selector:
    """A resolved selector: ``kind`` is pid, name or cmdline; ``origin`` the entry name."""

    kind: str
    value: int | str
    origin: str | None = None

    def describe(self) -> str:
        if self.kind == "pid":
            text = f"pid {self.value}"
        elif self.kind == "name":
            text = f"name {self.value!r}"
        else:
            text = f"cmdline /{self.value}/"
        return f"process {self.origin!r} ({text})" if self.origin else text


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    name: str
    create_time: float

    def label(self) -> str:
        return f"{self.pid} ({self.name})"


def _entry_errors(entry: Any) -> list[str]:
    """Problems with one ``config["processes"]`` entry, as human-readable reasons."""
    if not isinstance(entry, dict):
        return [f"must be a mapping with one of {', '.join(DIRECT_KEYS)}"]
    given = [key for key in DIRECT_KEYS if entry.get(key) is not None]
    if len(given) != 1:
        return [f"must define exactly one of {', '.join(DIRECT_KEYS)}"]
    key = given[0]
    checks = {"pid": _check_pid, "name": _check_name, "cmdline": _check_regex}
    try:
        if key != "pid" and not isinstance(entry[key], str):
            raise ValueError("must be a string")
        checks[key](entry[key])
    except ValueError as exc:
        return [f"{key}: {exc}"]
    return []


def resolve_selector(params: dict[str, Any], target_config: dict[str, Any] | None) -> Selector:
    """Turn validated params into a Selector; raise InvalidParams naming ``process``.

    Named entries are looked up here rather than at validation only, because the
    target's configuration may change between planning an experiment and running it.
    """
    for key in DIRECT_KEYS:
        if params.get(key) is not None:
            return Selector(key, params[key])
    entry_name = params.get("process")
    if entry_name is None:
        raise InvalidParams(
            [FieldError("", f"exactly one of {', '.join(SELECTOR_KEYS)} is required")]
        )
    processes = (target_config or {}).get("processes") or {}
    if not isinstance(processes, dict) or entry_name not in processes:
        defined = ", ".join(sorted(processes)) if isinstance(processes, dict) else ""
        raise InvalidParams(
            [
                FieldError(
                    "process",
                    f"unknown process {entry_name!r}; the target defines: {defined or '(none)'}",
                )
            ]
        )
    entry = processes[entry_name]
    problems = _entry_errors(entry)
    if problems:
        reason = f"the target's process {entry_name!r} is invalid: {problems[0]}"
        raise InvalidParams([FieldError("process", reason)])
    key = next(k for k in DIRECT_KEYS if entry.get(k) is not None)
    return Selector(key, entry[key], origin=entry_name)


def protected_pids() -> dict[int, str]:
    """Pids that must never be signalled, with the reason, as seen from this process."""
    me = psutil.Process()
    protected = {os.getpid(): "it is the agent itself"}
    for depth, ancestor in enumerate(me.parents()):
        protected[ancestor.pid] = (
            "it is the agent's parent" if depth == 0 else ("it is an ancestor of the agent")
        )
    protected[1] = "it is init (pid 1)"
    return protected


def _joined_cmdline(cmdline: list[str] | None) -> str:
    return " ".join(cmdline or [])


def _is_watchdog(cmdline: list[str] | None) -> bool:
    return WATCHDOG_MODULE in (cmdline or [])


def find_matching(selector: Selector) -> list[ProcessInfo]:
    """All live processes matching ``selector``, sorted by pid, protected ones excluded.

    An explicit pid that is protected is an error rather than a silent skip: the user
    asked for that very process and deserves to know why it will not be touched.
    """
    protected = protected_pids()
    if selector.kind == "pid":
        pid = int(selector.value)
        if pid in protected:
            raise InjectionError(f"refusing to signal pid {pid}: {protected[pid]}")
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                if proc.status() == psutil.STATUS_ZOMBIE:
                    return []
                if _is_watchdog(proc.cmdline()):
                    raise InjectionError(f"refusing to signal pid {pid}: it is a SCEP watchdog")
                return [ProcessInfo(pid, proc.name(), proc.create_time())]
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return []
        except psutil.AccessDenied:
            # Details unreadable (another user's process); the pid is still a valid
            # choice, and signalling it will report the permission problem clearly.
            try:
                return [ProcessInfo(pid, "?", psutil.Process(pid).create_time())]
            except psutil.Error:
                return []

    pattern = re.compile(str(selector.value)) if selector.kind == "cmdline" else None
    found = []
    attrs = ["pid", "name", "cmdline", "create_time", "status"]
    for proc in psutil.process_iter(attrs, ad_value=None):
        info = proc.info
        if info["pid"] in protected or info["pid"] < 2 or info["create_time"] is None:
            continue
        if info["status"] == psutil.STATUS_ZOMBIE or _is_watchdog(info["cmdline"]):
            continue
        if selector.kind == "name":
            matched = info["name"] == selector.value
        else:
            assert pattern is not None
            matched = (
                bool(info["cmdline"])
                and pattern.search(_joined_cmdline(info["cmdline"])) is not None
            )
        if matched:
            found.append(ProcessInfo(info["pid"], info["name"] or "?", info["create_time"]))
    found.sort(key=lambda p: p.pid)
    return found


def choose(matches: list[ProcessInfo], intensity: float) -> list[ProcessInfo]:
    """The ``ceil(intensity * len(matches))`` lowest pids (at least one).

    Lowest pids first makes a run repeatable; the small epsilon keeps float noise such as
    ``0.3 * 10 == 3.0000000000000004`` from rounding up to one extra process.
    """
    if not matches:
        return []
    share = min(max(float(intensity), 0.0), 1.0)
    count = max(1, math.ceil(share * len(matches) - 1e-9))
    return sorted(matches, key=lambda p: p.pid)[: min(count, len(matches))]


def select_processes(
    params: dict[str, Any], target_config: dict[str, Any] | None, intensity: float
) -> tuple[Selector, list[ProcessInfo], list[ProcessInfo]]:
    """Resolve, match and choose; returns (selector, all matches, chosen).

    Problems with the parameters surface as InjectionError here, because by inject time
    they are no longer the caller's input but the state of the target.
    """
    try:
        selector = resolve_selector(params, target_config)
    except InvalidParams as exc:
        raise InjectionError(str(exc)) from None
    matches = find_matching(selector)
    return selector, matches, choose(matches, intensity)
