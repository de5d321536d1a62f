"""What to run next: follow-up experiments as complete, valid spec dicts.

One run answers one question; the useful next question depends on the answer:

* ``breaking_point`` — past runs of this experiment both passed and failed at different
  intensities (or magnitudes, e.g. ``latency_ms``): bisect between the harshest pass and
  the mildest failure, so the breaking point is found in log2(range) runs;
* ``repeat`` — the run was inconclusive: repeat it with phases long enough, by a power
  estimate, to detect the observed (or minimum relevant) effect at alpha 0.01, power 0.8;
* ``blast_radius`` — it passed: double the intensity (capped at 1.0), or the magnitude
  once the intensity is already full;
* ``coverage`` — the most valuable fault family not yet run on the target, with default
  parameters filled from the target's config (families whose parameters cannot be
  filled are listed with what config is missing instead of being suggested);
* ``combined`` — it passed: a second fault to run alongside this one. A spec holds one
  fault today, so the suggestion is the companion spec and the rationale says how to
  overlap the two runs.

Every suggestion's ``spec`` is derived from the run's spec (same target, metrics and
hypothesis) and its fault parameters are checked by the injector itself; durations and
intensity respect ``caps``. Pure Python: the injector registry is the only import
outside the analysis core, and it needs no Django.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from scipy import stats as sps

__all__ = [
    "DEFAULT_CAPS",
    "FAMILY_VALUE",
    "bisect_breaking_point",
    "coverage_matrix",
    "power_sample_size",
    "suggest_next",
]

DEFAULT_CAPS = {"max_duration": 3600.0, "max_intensity": 1.0, "max_window": 3600.0}
#: Fault families in order of how much an untested one is worth trying, most first:
#: network and process failures are the most common in production, code flags the least
#: informative without a specific bug in mind.
FAMILY_VALUE = ("network", "process", "http", "database", "resource", "dns", "cloud", "code")
#: The "how hard" parameter per fault type and which way is harsher (+1 = larger).
MAGNITUDE: dict[str, tuple[str, int, float]] = {
    "network.latency": ("latency_ms", +1, 600_000.0),
    "network.bandwidth": ("rate_kbps", -1, 1e9),
    "http.delay": ("delay_ms", +1, 600_000.0),
    "network.slow_close": ("delay_ms", +1, 600_000.0),
    "resource.cpu": ("load_percent", +1, 100.0),
    "resource.memory": ("mib", +1, 1e7),
}
#: Bisection stops when the gap is below this share of the interval's upper end.
BISECT_RESOLUTION = 0.1
MIN_RELEVANT_EFFECT = 0.10
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


# --- small helpers ---------------------------------------------------------------------------


def _seconds(value: Any, default: float) -> float:
    """Seconds from a spec duration (number or "20s"/"2m"), tolerating absent values."""
    if value is None:
        return default
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    m = _DURATION.match(str(value))
    return float(m.group(1)) * _UNIT[m.group(2)] if m else default


def _name(base: str, suffix: str) -> str:
    """A spec name matching ``^[a-z][a-z0-9_.-]{0,99}$`` made of the base and a suffix."""
    clean = re.sub(r"[^a-z0-9_.\-]", "-", f"{base}-{suffix}".lower()).strip("-")
    if not clean or not clean[0].isalpha():
        clean = "x-" + clean
    return clean[:100]


def _family(fault_type: str) -> str:
    return fault_type.split(".", 1)[0]


def _verdict_of(result: Any) -> str:
    if result is None:
        return ""
    if isinstance(result, Mapping):
        return str(result.get("verdict") or "")
    return str(getattr(result, "verdict", "") or "")


def _unconfirmed_worse(result: Any) -> list[str]:
    """Metrics that moved the wrong way beyond tolerance without the test confirming it."""
    if result is None:
        return []
    raw = result.get("findings") if isinstance(result, Mapping) else getattr(result, "findings", [])
    out = []
    for f in raw or []:
        f = f if isinstance(f, Mapping) else f.to_dict()
        if (
            f.get("kind") == "unconfirmed_change"
            and (f.get("evidence") or {}).get("direction") == "worse"
        ):
            out.append(str(f.get("metric")))
    return out


def _metrics_of(result: Any) -> Mapping[str, Any]:
    if result is None:
        return {}
    if isinstance(result, Mapping):
        return result.get("metrics") or {}
    return getattr(result, "metrics", {}) or {}


def _entry_fault(entry: Mapping[str, Any]) -> dict[str, Any]:
    spec = entry.get("spec") or {}
    fault = entry.get("fault") or spec.get("fault") or {}
    ftype = entry.get("fault_type") or fault.get("type") or ""
    return {"type": ftype, "params": dict(entry.get("params") or fault.get("params") or {})}


def _entry_intensity(entry: Mapping[str, Any]) -> float | None:
    value = entry.get("intensity")
    if value is None:
        value = (entry.get("spec") or {}).get("intensity", 1.0)
    return None if value is None else float(value)


def _validator(target_config: Mapping[str, Any] | None) -> Callable[[str, dict], str | None]:
    """``check(type, params) -> None`` when the injector accepts them, else the reason."""
    from injectors.base import InjectorError
    from injectors.registry import get_injector

    def check(fault_type: str, params: dict) -> str | None:
        try:
            get_injector(fault_type).validate(
                params, dict(target_config) if target_config is not None else None
            )
        except InjectorError as exc:
            return str(exc)
        return None

    return check


def _derive(
    spec: Mapping[str, Any], suffix: str, caps: Mapping[str, float], **changes: Any
) -> dict[str, Any]:
    """A copy of ``spec`` with a new name, numeric durations and the changes applied."""
    out = copy.deepcopy(dict(spec))
    out["name"] = _name(str(spec.get("name") or "experiment"), suffix)
    out["duration"] = _seconds(spec.get("duration"), 30.0)
    out["baseline"] = _seconds(spec.get("baseline"), 30.0)
    out["recovery"] = _seconds(spec.get("recovery"), 30.0)
    out.update(changes)
    out["duration"] = min(float(out["duration"]), caps["max_duration"])
    out["baseline"] = min(float(out["baseline"]), caps["max_window"])
    out["recovery"] = min(float(out["recovery"]), caps["max_window"])
    out["intensity"] = min(float(out.get("intensity", 1.0)), caps["max_intensity"])
    return out


def _suggestion(
    kind: str, title: str, rationale: str, spec: dict[str, Any], priority: int, **extra: Any
) -> dict[str, Any]:
    return {
        "kind": kind,
        "title": title,
        "rationale": rationale,
        "priority": priority,
        "spec": spec,
        **extra,
    }


# --- breaking point ---------------------------------------------------------------------------


def bisect_breaking_point(
    pairs: Iterable[tuple[float, str]], *, harsher: int = +1, resolution: float = BISECT_RESOLUTION
) -> dict[str, Any] | None:
    """The next level to try, halfway between the harshest pass and the mildest failure.

    ``pairs`` are ``(level, verdict)``; only ``passed``/``failed`` count. ``harsher`` is
    +1 when a larger level is harsher (latency, intensity), -1 when smaller is (bandwidth).
    Returns ``None`` unless there is at least one pass and one failure; ``converged`` is
    True when the two are already within ``resolution`` of each other (relative), and
    ``monotone`` is False when something passed at a level harsher than a failure (a
    flaky result that deserves repeats rather than more bisection).
    """
    passes = [float(x) for x, v in pairs if v == "passed" and x is not None]
    fails = [float(x) for x, v in pairs if v == "failed" and x is not None]
    if not passes or not fails:
        return None
    harshest_pass = max(passes, key=lambda x: harsher * x)
    mildest_fail = min(fails, key=lambda x: harsher * x)
    gap = abs(mildest_fail - harshest_pass)
    scale = max(abs(mildest_fail), abs(harshest_pass), 1e-12)
    return {
        "highest_pass": harshest_pass,
        "lowest_fail": mildest_fail,
        "next": (harshest_pass + mildest_fail) / 2.0,
        "converged": gap <= resolution * scale,
        "monotone": harsher * harshest_pass < harsher * mildest_fail,
    }


def _breaking_point(
    spec: Mapping[str, Any],
    history: list[Mapping[str, Any]],
    verdict: str,
    caps: Mapping[str, float],
    check: Callable[[str, dict], str | None],
) -> dict[str, Any] | None:
    fault = dict(spec.get("fault") or {})
    ftype = fault.get("type", "")
    name = spec.get("name")
    # Same fault type, and the same experiment when the entry says which one it was:
    # the caller may pass the whole target's history.
    same = [
        h
        for h in history
        if _entry_fault(h)["type"] == ftype and ((h.get("spec") or {}).get("name", name) == name)
    ]
    current = {"fault": fault, "intensity": spec.get("intensity", 1.0), "verdict": verdict}
    runs = [*same, current]
    key, direction, limit = MAGNITUDE.get(ftype, ("", +1, 0.0))
    magnitudes = {_entry_fault(r)["params"].get(key) for r in runs} if key else set()
    use_magnitude = bool(key) and len(magnitudes - {None}) > 1
    if use_magnitude:
        pairs = [(_entry_fault(r)["params"].get(key), r.get("verdict")) for r in runs]
        found = bisect_breaking_point(pairs, harsher=direction)
    else:
        pairs = [(_entry_intensity(r), r.get("verdict")) for r in runs]
        found = bisect_breaking_point(pairs, harsher=+1)
    if found is None or found["converged"]:
        return None
    what = key if use_magnitude else "intensity"
    nxt = found["next"]
    if use_magnitude:
        params = {**(fault.get("params") or {}), key: min(limit, round(nxt, 3))}
        changes: dict[str, Any] = {"fault": {"type": ftype, "params": params}}
    else:
        nxt = round(min(caps["max_intensity"], max(0.01, nxt)), 3)
        changes = {"intensity": nxt}
    if check(ftype, changes.get("fault", fault).get("params") or {}) is not None:
        return None
    note = (
        ""
        if found["monotone"]
        else " Results are not monotone (a harsher level passed where a milder one failed): "
        "repeat both ends as well, the system may be flaky at this level."
    )
    return _suggestion(
        "breaking_point",
        f"Bisect the breaking point: {what} = {nxt:g}",
        f"This experiment passed at {what} {found['highest_pass']:g} and failed at "
        f"{found['lowest_fail']:g}; trying the midpoint {nxt:g} halves the interval that "
        f"holds the breaking point.{note}",
        _derive(spec, f"bisect-{what}-{nxt:g}", caps, **changes),
        5,
        search=found,
    )


# --- repeat with enough data ------------------------------------------------------------------


def power_sample_size(
    effect: float, sigma: float, *, alpha: float = 0.01, power: float = 0.8
) -> int | None:
    """Points per phase for a two-sided Mann-Whitney test to detect a shift of ``effect``.

    The two-sample z formula ``n = 2 (z_{1-a/2} + z_power)^2 sigma^2 / effect^2``,
    divided by the rank test's asymptotic efficiency relative to the t-test (3/pi for
    normal data) — a slight overestimate on heavy-tailed data, where the rank test does
    better. ``None`` when the effect or spread is not usable.
    """
    if not (effect and math.isfinite(effect)) or not (sigma >= 0 and math.isfinite(sigma)):
        return None
    z = float(sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power))
    n = 2.0 * z * z * sigma * sigma / (effect * effect) / (3.0 / math.pi)
    return max(5, math.ceil(n))


def _needed_points(
    spec: Mapping[str, Any], metrics: Mapping[str, Any]
) -> tuple[int | None, str | None, float | None]:
    """(points per phase, deciding metric, effect) over the metrics the verdict reads."""
    ruled = {r.get("metric") for r in spec.get("hypothesis") or []}
    worst: tuple[int | None, str | None, float | None] = (None, None, None)
    for name, m in metrics.items():
        if ruled and name not in ruled:
            continue
        base = ((m.get("phases") or {}).get("baseline")) or {}
        median, mad, std = base.get("p50"), base.get("mad"), base.get("std")
        if median is None:
            continue
        sigma = mad * 1.4826 if mad else (std or 0.0)
        shift = ((m.get("during") or {}).get("shift") or {}).get("shift")
        minimum = MIN_RELEVANT_EFFECT * abs(median) or sigma
        effect = max(abs(shift or 0.0), minimum)
        n = power_sample_size(effect, sigma) if sigma > 0 else 5
        if n is not None and (worst[0] is None or n > worst[0]):
            worst = (n, name, effect)
    return worst


def _repeat(
    spec: Mapping[str, Any],
    result: Any,
    caps: Mapping[str, float],
    unclear: list[str] | None = None,
) -> dict[str, Any] | None:
    interval = float(_seconds(spec.get("interval"), 1.0))
    n, metric, effect = _needed_points(spec, _metrics_of(result))
    if n is None:
        n = 30
    need = n * interval
    duration = max(_seconds(spec.get("duration"), 30.0), need)
    baseline = max(_seconds(spec.get("baseline"), 30.0), need)
    recovery = max(_seconds(spec.get("recovery"), 30.0), need)
    capped = duration > caps["max_duration"] or max(baseline, recovery) > caps["max_window"]
    why = (
        f"{n} points per phase (at {interval:g} s each) are needed to detect a shift of "
        f"{effect:.4g} on {metric} at alpha 0.01 with 80 % power"
        if metric
        else f"at least {n} points per phase are needed for a usable comparison"
    )
    opening = (
        "The run was inconclusive"
        if _verdict_of(result) == "inconclusive" or not unclear
        else f"{', '.join(unclear)} moved the wrong way during the fault, but not significantly"
    )
    tail = (
        " Even the policy caps cannot reach that: reduce the metric's noise or use a harsher fault."
        if capped
        else ""
    )
    return _suggestion(
        "repeat",
        "Repeat with longer phases",
        f"{opening}; {why}, so baseline, fault and recovery last "
        f"{min(baseline, caps['max_window']):g} / {min(duration, caps['max_duration']):g} / "
        f"{min(recovery, caps['max_window']):g} s.{tail}",
        _derive(spec, "repeat", caps, duration=duration, baseline=baseline, recovery=recovery),
        5,
        points_per_phase=n,
        effect=effect,
    )


# --- blast radius -------------------------------------------------------------------------


def _blast_radius(
    spec: Mapping[str, Any], caps: Mapping[str, float], check: Callable[[str, dict], str | None]
) -> dict[str, Any] | None:
    intensity = float(spec.get("intensity", 1.0))
    fault = dict(spec.get("fault") or {})
    if intensity < caps["max_intensity"]:
        nxt = round(min(caps["max_intensity"], intensity * 2), 3)
        return _suggestion(
            "blast_radius",
            f"Widen the blast radius: intensity {intensity:g} → {nxt:g}",
            f"The system held at intensity {intensity:g}; doubling it (capped at "
            f"{caps['max_intensity']:g}) tests whether the resilience holds when more of "
            "the traffic or fleet is affected.",
            _derive(spec, f"intensity-{nxt:g}", caps, intensity=nxt),
            3,
        )
    key, direction, limit = MAGNITUDE.get(fault.get("type", ""), ("", +1, 0.0))
    current = (fault.get("params") or {}).get(key) if key else None
    if not isinstance(current, int | float) or not current:
        return None
    nxt = min(limit, current * 2) if direction > 0 else current / 2
    if nxt == current:
        return None
    params = {**(fault.get("params") or {}), key: nxt}
    if check(fault["type"], params) is not None:
        return None
    return _suggestion(
        "blast_radius",
        f"Harsher fault: {key} {current:g} → {nxt:g}",
        f"The system held at full intensity; making the fault twice as harsh ({key} "
        f"{current:g} → {nxt:g}) probes the remaining margin.",
        _derive(spec, f"{key}-{nxt:g}", caps, fault={"type": fault["type"], "params": params}),
        3,
    )


# --- coverage --------------------------------------------------------------------------------


def _first(mapping: Any) -> str | None:
    return sorted(mapping)[0] if isinstance(mapping, Mapping) and mapping else None


def _candidates(family: str, cfg: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Default faults of a family, with parameters taken from the target config."""
    proxy = _first(cfg.get("proxies"))
    http_proxy = _first(cfg.get("http_proxies"))
    process = _first(cfg.get("processes"))
    aws = cfg.get("aws") or {}
    flags = cfg.get("flags") or {}
    table = {
        "network": [
            ("network.latency", {"proxy": proxy, "latency_ms": 300}),
            ("network.reset_peer", {"proxy": proxy}),
        ],
        "process": [
            ("process.pause", {"process": process}),
            ("process.kill", {"process": process}),
        ],
        "http": [
            ("http.abort", {"proxy": http_proxy, "status": 503}),
            ("http.delay", {"proxy": http_proxy, "delay_ms": 500}),
        ],
        "database": [
            ("database.pg_exhaust_connections", {"share": 0.8}),
            ("database.redis_client_pause", {}),
        ],
        "resource": [("resource.cpu", {"workers": 1, "load_percent": 80})],
        "dns": [],
        "cloud": [
            ("cloud.ec2_reboot", {"tags": aws.get("tags") or {}, "count": 1}),
            ("cloud.lambda_throttle", {"function_name": aws.get("function_name")}),
        ],
        "code": [("code.flag", {"flag": _first(flags), "effect": "exception"})],
    }
    return [(t, {k: v for k, v in p.items() if v is not None}) for t, p in table.get(family, [])]


def coverage_matrix(
    target_config: Mapping[str, Any] | None,
    tested_types: Iterable[str],
) -> dict[str, dict[str, Any]]:
    """Per family: tested?, which types ran, and a runnable default fault or what is missing."""
    from injectors.registry import known_types

    cfg = target_config or {}
    check = _validator(target_config)
    installed = set(known_types())
    tested = sorted(set(tested_types))
    out: dict[str, dict[str, Any]] = {}
    for family in FAMILY_VALUE:
        ran = [t for t in tested if _family(t) == family]
        entry: dict[str, Any] = {"tested": bool(ran), "types": ran, "fault": None, "missing": []}
        if not any(_family(t) == family for t in installed):
            entry["missing"].append(f"no {family} injector is installed")
        for ftype, params in _candidates(family, cfg):
            if ftype not in installed:
                entry["missing"].append(f"{ftype}: injector not installed")
                continue
            problem = check(ftype, params)
            if problem is None:
                entry["fault"] = {"type": ftype, "params": params}
                break
            entry["missing"].append(f"{ftype}: {problem}")
        out[family] = entry
    return out


def _coverage(
    spec: Mapping[str, Any],
    history: list[Mapping[str, Any]],
    target_config: Mapping[str, Any] | None,
    caps: Mapping[str, float],
) -> dict[str, Any] | None:
    tested = [_entry_fault(h)["type"] for h in history]
    tested.append(str((spec.get("fault") or {}).get("type", "")))
    matrix = coverage_matrix(target_config, [t for t in tested if t])
    blocked = []
    for family in FAMILY_VALUE:
        entry = matrix[family]
        if entry["tested"]:
            continue
        if entry["fault"] is None:
            blocked.append({"family": family, "missing": entry["missing"]})
            continue
        skipped = (
            "; more valuable but not runnable yet: "
            + "; ".join(f"{b['family']} ({', '.join(b['missing'])})" for b in blocked)
            if blocked
            else ""
        )
        fault = entry["fault"]
        return _suggestion(
            "coverage",
            f"Untested family: {family} ({fault['type']})",
            f"No {family} fault has been run on this target yet; {fault['type']} with default "
            f"parameters {fault['params']} is the most valuable gap the target's config can "
            f"fill{skipped}.",
            _derive(spec, f"{fault['type']}", caps, fault=fault, intensity=1.0),
            4,
            coverage={k: {"tested": v["tested"], "types": v["types"]} for k, v in matrix.items()},
            blocked=blocked,
        )
    return None


# --- combined ---------------------------------------------------------------------------------


def _combined(
    spec: Mapping[str, Any], target_config: Mapping[str, Any] | None, caps: Mapping[str, float]
) -> dict[str, Any] | None:
    fault = dict(spec.get("fault") or {})
    own = _family(str(fault.get("type", "")))
    matrix = coverage_matrix(target_config, [])
    for family in FAMILY_VALUE:
        if family == own or matrix[family]["fault"] is None:
            continue
        companion = matrix[family]["fault"]
        return _suggestion(
            "combined",
            f"Combine {fault.get('type')} with {companion['type']}",
            f"The system survived {fault.get('type')} alone; real incidents stack faults. A spec "
            f"holds one fault today, so start this {companion['type']} spec while a run of "
            f"'{spec.get('name')}' is in its fault phase (same duration, started together) "
            "and compare both runs' findings with their single-fault baselines.",
            _derive(spec, f"with-{companion['type']}", caps, fault=companion),
            2,
            companion_fault=fault,
        )
    return None


# --- entry point -----------------------------------------------------------------------------


def suggest_next(
    spec: Mapping[str, Any],
    history: list[Mapping[str, Any]],
    result: Any,
    target_config: Mapping[str, Any] | None = None,
    *,
    caps: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Suggested next experiments for a run, most useful first.

    ``history`` holds earlier runs on the same target, each a mapping with ``verdict``
    and either ``spec`` (the run's spec) or ``fault_type``/``params``/``intensity``;
    entries of other fault types only count for coverage. ``result`` is the run's
    :class:`AnalysisResult` or its ``to_dict()``. Each suggestion is
    ``{kind, title, rationale, priority, spec, ...}`` and ``spec`` is a complete spec.
    """
    limits = {**DEFAULT_CAPS, **(caps or {})}
    check = _validator(target_config)
    verdict = _verdict_of(result)
    out: list[dict[str, Any]] = []
    bp = _breaking_point(spec, list(history), verdict, limits, check)
    if bp:
        out.append(bp)
    unclear = _unconfirmed_worse(result)
    if verdict == "inconclusive" or unclear:
        rep = _repeat(spec, result, limits, unclear)
        if rep:
            out.append(rep)
    if verdict == "passed" and not bp and not unclear:
        # A harsher fault is premature while the gentler one's effect is still unknown.
        br = _blast_radius(spec, limits, check)
        if br:
            out.append(br)
    cov = _coverage(spec, list(history), target_config, limits)
    if cov:
        out.append(cov)
    if verdict == "passed":
        comb = _combined(spec, target_config, limits)
        if comb:
            out.append(comb)
    out.sort(key=lambda s: -s["priority"])
    return out
