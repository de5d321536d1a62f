"""What to fix: a catalogue of resilience advice, matched to findings, with the run's numbers.

Generic advice ("add retries") is ignored; advice that quotes what the run measured
("set the client timeout to ~690 ms: p99 was 460 ms under 300 ms of injected latency")
gets acted on. So each catalogue entry is data — when it applies (fault family or type,
finding kind, metric role, optional numeric conditions), a title, an advice *template*
filled from the finding's evidence, a rationale and a priority — and an entry whose
template needs a number the run did not produce is skipped rather than printed with a
hole in it.

Ranking is ``severity weight x confidence x priority / 5``; one recommendation per
catalogue entry (the best-matching finding fills it; other metrics it applies to are
listed). Everything is deterministic: same findings, same advice, same order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CATALOGUE", "Advice", "build_context", "recommend"]

_SEVERITY_WEIGHT = {"info": 0.2, "low": 0.4, "medium": 0.6, "high": 0.8, "critical": 1.0}
_TIME_UNIT_TO_MS = {
    "ms": 1.0,
    "milliseconds": 1.0,
    "s": 1000.0,
    "sec": 1000.0,
    "seconds": 1000.0,
    "us": 0.001,
    "µs": 0.001,
}
_CHANGES = ("degradation", "error_spike", "saturation", "collateral_impact")


@dataclass(frozen=True)
class Advice:
    """One catalogue entry. Empty match tuples mean "any"."""

    id: str
    title: str
    template: str
    rationale: str
    priority: int
    kinds: tuple[str, ...]
    roles: tuple[str, ...] = ()
    families: tuple[str, ...] = ()
    fault_types: tuple[str, ...] = ()
    #: Context values that must be at least this large (e.g. ``{"baseline_cv": 0.5}``).
    minimum: Mapping[str, float] = field(default_factory=dict)

    def matches(self, ctx: Mapping[str, Any]) -> bool:
        if self.kinds and ctx.get("kind") not in self.kinds:
            return False
        if self.roles and ctx.get("role") not in self.roles:
            return False
        if self.families and ctx.get("fault_family") not in self.families:
            return False
        if self.fault_types and ctx.get("fault_type") not in self.fault_types:
            return False
        for key, floor in self.minimum.items():
            value = ctx.get(key)
            if not isinstance(value, int | float) or not value >= floor:
                return False
        return True


CATALOGUE: tuple[Advice, ...] = (
    Advice(
        "timeout-under-latency",
        "Size the client timeout from the observed tail",
        "Set the client timeout for calls behind {proxy_or_target} to ~{timeout_ms:.0f} ms "
        "(observed p99 {p99_during_ms:.0f} ms under {latency_ms:.0f} ms injected latency, "
        "baseline p99 {p99_baseline_ms:.0f} ms).",
        "A timeout just above the degraded p99 keeps slow-but-working calls alive while "
        "cutting off the hung ones that pin threads and connections.",
        5,
        ("degradation", "hypothesis_violated"),
        ("latency",),
        fault_types=("network.latency",),
    ),
    Advice(
        "timeout-budget",
        "Propagate a deadline budget across hops",
        "Give each request an end-to-end deadline and pass the remainder downstream: "
        "{metric} p99 went from {p99_baseline_ms:.0f} ms to {p99_during_ms:.0f} ms "
        "({relative_pct:+.0f}%), so a per-hop timeout of ~{timeout_ms:.0f} ms only works "
        "if the caller's budget is at least {budget_ms:.0f} ms.",
        "Independent per-hop timeouts add up; a shared budget makes the slowest hop fail "
        "fast instead of every caller waiting in turn.",
        4,
        ("degradation",),
        ("latency",),
    ),
    Advice(
        "retry-backoff-jitter",
        "Retry transient failures with capped exponential backoff and jitter",
        "Retry idempotent calls at most 3 times with exponential backoff starting at "
        "~{backoff_base_ms:.0f} ms (capped at {backoff_cap_ms:.0f} ms) and full jitter: "
        "{metric} rose from {err_baseline_txt} to {err_during_txt} during the fault.",
        "Most injected network and process faults are transient; jitter keeps the retries "
        "of many clients from arriving in synchronized waves.",
        5,
        ("error_spike",),
        ("errors",),
        families=("network", "http", "dns", "process", "database", "cloud"),
    ),
    Advice(
        "circuit-breaker",
        "Add a circuit breaker around the failing dependency",
        "Open a circuit breaker when the error ratio exceeds ~{breaker_threshold_pct:.0f}% "
        "over a {breaker_window_s:.0f} s window and probe again after "
        "{breaker_cooldown_s:.0f} s: {metric} reached {err_during_txt} "
        "(baseline {err_baseline_txt}) for the {fault_duration_s:.0f} s fault.",
        "Failing fast while a dependency is down frees callers' resources and gives the "
        "dependency room to recover instead of absorbing retries.",
        5,
        ("error_spike",),
        ("errors",),
    ),
    Advice(
        "circuit-breaker-latency",
        "Trip on slow calls, not only on errors",
        "Count calls slower than {slow_call_ms:.0f} ms as failures in the circuit breaker: "
        "{metric} p95 rose {relative_pct:+.0f}% to {p95_during_ms:.0f} ms without "
        "necessarily producing errors.",
        "A dependency that answers slowly is often worse than one that fails: it holds "
        "resources for the whole wait.",
        3,
        ("degradation",),
        ("latency",),
        families=("network", "http", "database", "cloud"),
    ),
    Advice(
        "bulkhead",
        "Isolate components with bulkheads",
        "Give {component_txt} its own connection/thread pool: {metric} moved "
        "{relative_pct:+.0f}% (p={p_adjusted:.2g}) although the fault did not target it.",
        "Collateral impact means a shared resource carried the failure across a boundary; "
        "a bulkhead bounds how much of it one dependency can take.",
        5,
        ("collateral_impact",),
    ),
    Advice(
        "pool-limits",
        "Bound the pool and its wait time",
        "Cap {metric} and the wait for a free slot (e.g. a pool wait timeout of "
        "~{pool_wait_ms:.0f} ms): it ran at {ceiling_share_pct:.0f}% of its ceiling "
        "{ceiling:g} during the fault vs {baseline_share_pct:.0f}% before.",
        "An exhausted pool turns every caller into a waiter; a bounded wait turns "
        "exhaustion into fast, visible errors.",
        4,
        ("saturation",),
        ("saturation",),
    ),
    Advice(
        "autoscaling",
        "Scale out before the ceiling",
        "Add an autoscaling trigger at ~{scale_at_pct:.0f}% of the ceiling sustained for "
        "{scale_window_s:.0f} s: {metric} hit {ceiling_share_pct:.0f}% within "
        "{tti_s:.0f} s of the injection.",
        "Scaling reacts in tens of seconds to minutes; it must start before saturation, not at it.",
        3,
        ("saturation",),
        ("saturation",),
        families=("resource", "process", "cloud", "network"),
    ),
    Advice(
        "load-shedding",
        "Shed load early instead of queueing",
        "Reject or defer low-priority work once {metric} exceeds ~{shed_at_txt} "
        "(it reached {window_p95_txt} at p95 vs {baseline_p95_txt} in the baseline).",
        "Queues that grow without bound turn a short fault into a long recovery; dropping "
        "early keeps latency bounded for the work that is accepted.",
        4,
        ("saturation", "degradation"),
        ("saturation", "latency"),
        minimum={"relative_abs": 0.5},
    ),
    Advice(
        "health-check-restart",
        "Let a liveness check restart what does not come back",
        "Add a liveness check that restarts the instance when {metric} stays past "
        "{liveness_threshold_txt} for {liveness_window_s:.0f} s: it was still at "
        "{recovery_median_txt} vs baseline {baseline_median_txt} at the end of the "
        "{recovery_window_s:.0f} s recovery window.",
        "A component that does not return to normal after the fault is gone has stuck "
        "state (dead connections, a wedged worker); a restart is the bluntest reliable fix.",
        4,
        ("no_recovery",),
    ),
    Advice(
        "reconnect-backoff-cap",
        "Cap reconnect backoff so recovery follows the fault",
        "Cap reconnect/retry backoff at ~{reconnect_cap_s:.0f} s: {metric} needed "
        "{ttr_s:.0f} s after the revert ({ttr_share_pct:.0f}% of the fault's duration) to "
        "return to baseline.",
        "An uncapped exponential backoff can leave clients sleeping long after the "
        "dependency is healthy again.",
        4,
        ("slow_recovery", "no_recovery"),
        families=("network", "http", "dns", "database", "cloud", "process"),
    ),
    Advice(
        "warm-up",
        "Warm caches and pools after a recovery",
        "Pre-warm connection pools and caches on (re)start: recovery took {ttr_s:.0f} s, "
        "{ttr_intervals:.0f} sampling intervals, with a degradation area of "
        "{area_txt}.",
        "Cold caches and empty pools make the first minutes after a fault look like a "
        "second, smaller outage.",
        3,
        ("slow_recovery",),
    ),
    Advice(
        "readiness-probe",
        "Route traffic only to ready instances",
        "Gate traffic on a readiness probe that checks dependencies, and fail it within "
        "{probe_period_s:.0f} s: {metric} went to {err_during_txt} for about "
        "{fault_duration_s:.0f} s while the process was unavailable.",
        "Without readiness, the load balancer keeps sending requests to an instance that "
        "was killed or paused until the connection attempts fail.",
        4,
        ("error_spike", "degradation"),
        ("errors", "throughput"),
        families=("process", "resource"),
    ),
    Advice(
        "connection-draining",
        "Drain connections on shutdown and restart",
        "Stop accepting new requests, finish in-flight ones (drain for ~{drain_s:.0f} s) "
        "and deregister before exiting: {metric} rose to {err_during_txt} when the process "
        "went away.",
        "Killed processes drop in-flight requests; draining turns those into retries on "
        "a healthy instance.",
        3,
        ("error_spike",),
        ("errors",),
        families=("process",),
    ),
    Advice(
        "idempotency-keys",
        "Make retried writes safe with idempotency keys",
        "Send an idempotency key with every write so a retry after a dropped connection "
        "cannot apply twice: {err_during_txt} of requests failed mid-flight under "
        "{fault_type}.",
        "Connection resets and killed processes leave the caller unsure whether the write "
        "happened; only idempotent writes can be retried blindly.",
        4,
        ("error_spike",),
        ("errors",),
        fault_types=("network.reset_peer", "network.blackhole", "process.kill"),
    ),
    Advice(
        "caching",
        "Serve reads from a cache while the dependency is slow",
        "Cache read responses (serve stale for up to {stale_s:.0f} s when the origin is "
        "slow): {metric} p95 went from {p95_baseline_ms:.0f} ms to {p95_during_ms:.0f} ms.",
        "A stale answer in 5 ms beats a fresh one in seconds for most reads, and it takes "
        "load off the struggling dependency.",
        3,
        ("degradation",),
        ("latency",),
        families=("network", "http", "database", "dns", "cloud"),
    ),
    Advice(
        "hedged-requests",
        "Hedge requests to cut the tail",
        "Send a second (hedged) request after ~{p95_baseline_ms:.0f} ms, the baseline p95: "
        "the fault stretched the tail to p99 {p99_during_ms:.0f} ms, {tail_ratio:.1f}x the "
        "during median.",
        "When only some requests are slow, a hedge after the normal p95 costs a few percent "
        "extra load and removes most of the tail.",
        2,
        ("degradation",),
        ("latency",),
        minimum={"tail_ratio": 3.0},
    ),
    Advice(
        "graceful-degradation",
        "Degrade gracefully instead of failing",
        "Return a reduced response (defaults, cached data, feature off) when the dependency "
        "fails: {metric} changed {relative_pct:+.0f}% ({window_median_txt} vs "
        "{baseline_median_txt}).",
        "Users tolerate missing extras far better than errors; a fallback path keeps the "
        "core flow working.",
        3,
        ("degradation", "error_spike"),
        ("throughput", "errors"),
    ),
    Advice(
        "bandwidth-payloads",
        "Shrink payloads for constrained links",
        "Compress and paginate responses: at {rate_kbps:.0f} KiB/s per connection "
        "{metric} moved {relative_pct:+.0f}% ({window_median_txt} vs {baseline_median_txt}).",
        "Under a bandwidth cap, time is proportional to bytes; smaller payloads are the "
        "only fix that does not need more capacity.",
        3,
        ("degradation", "hypothesis_violated"),
        ("latency", "throughput"),
        fault_types=("network.bandwidth",),
    ),
    Advice(
        "connect-timeout-keepalive",
        "Detect black holes with connect timeouts and keepalives",
        "Set a connect timeout of ~{connect_timeout_ms:.0f} ms and TCP keepalive/read "
        "timeouts: under a black hole {metric} reached p99 {p99_during_ms:.0f} ms "
        "(baseline {p99_baseline_ms:.0f} ms).",
        "A black-holed peer never answers or resets; only timeouts notice it.",
        4,
        ("degradation", "error_spike", "hypothesis_violated"),
        ("latency", "errors"),
        fault_types=("network.blackhole",),
    ),
    Advice(
        "dns-caching",
        "Cache DNS answers and keep the last good one",
        "Cache resolutions for at least {dns_ttl_s:.0f} s and serve the last good answer "
        "when the resolver fails: the {fault_duration_s:.0f} s DNS fault moved {metric} "
        "{relative_pct:+.0f}%.",
        "Resolver outages are usually short; a client that keeps its last good answer does "
        "not notice them.",
        4,
        ("degradation", "error_spike", "no_recovery"),
        families=("dns",),
    ),
    Advice(
        "db-failover",
        "Fail over to a replica and bound query time",
        "Set a statement timeout of ~{timeout_ms:.0f} ms and route reads to a replica when "
        "the primary degrades: {metric} reached p99 {p99_during_ms:.0f} ms during the "
        "database fault.",
        "A slow primary should not hold application threads for the length of its worst query.",
        4,
        ("degradation", "error_spike", "saturation"),
        ("latency", "errors", "saturation"),
        families=("database",),
    ),
    Advice(
        "multi-az",
        "Spread across zones and retry on another endpoint",
        "Run in at least two availability zones and let clients retry on another endpoint: "
        "the cloud fault moved {metric} {relative_pct:+.0f}% for {fault_duration_s:.0f} s.",
        "Cloud faults are usually scoped to an instance or zone; redundancy across that "
        "scope turns an outage into a retry.",
        4,
        ("degradation", "error_spike", "no_recovery"),
        families=("cloud",),
    ),
    Advice(
        "code-fallback",
        "Guard the failing code path with a fallback",
        "Wrap the flagged code path in a fallback (default value, feature off) and a "
        "bounded retry: {metric} went to {window_median_txt} (baseline "
        "{baseline_median_txt}) while the failure flag was on.",
        "Injected code failures stand for bugs and bad deploys; a fallback and a kill "
        "switch bound their reach.",
        3,
        ("error_spike", "degradation"),
        families=("code",),
    ),
    Advice(
        "resource-limits",
        "Set resource requests/limits with headroom",
        "Reserve headroom: {metric} rose to {ceiling_share_pct:.0f}% of its ceiling under "
        "the resource stress; set limits so that normal load peaks at ~{headroom_pct:.0f}%.",
        "Noisy neighbours and stress faults take the slack first; a service that runs near "
        "its limit has none.",
        3,
        ("saturation",),
        families=("resource",),
    ),
    Advice(
        "alert-on-hypothesis",
        "Alert on the hypothesis that was violated",
        "Alert when {aggregate}({metric}) over {rule_phase} crosses {threshold_txt}: the "
        "run observed {observed_txt} ({margin_pct:.0f}% past the threshold).",
        "The hypothesis is the team's own definition of acceptable; the same check should "
        "page in production before users notice.",
        3,
        ("hypothesis_violated",),
    ),
    Advice(
        "check-probe",
        "Check the probe behind an unexpected improvement",
        "Verify what {metric} measures: it improved {relative_pct:+.0f}% during the fault "
        "({window_median_txt} vs {baseline_median_txt}), which usually means work was "
        "skipped, errors were served fast or the probe hit a cache.",
        "A fault that makes a metric better often hides a failure the metric cannot see.",
        2,
        ("unexpected_improvement",),
    ),
    Advice(
        "settle-unclear-change",
        "Repeat the run to settle a change it could not confirm",
        "{metric} moved {relative_pct:+.0f}% during the fault ({baseline_median_txt} → "
        "{window_median_txt}), beyond the ±{tolerance_txt} tolerance, but p={p_adjusted:.2g} "
        "is not significant: repeat with longer phases before counting it as no impact.",
        "A change the run was too short to confirm is neither a pass nor a failure; acting "
        "on either reading is a guess.",
        2,
        ("unconfirmed_change",),
    ),
    Advice(
        "stabilise-baseline",
        "Stabilise the baseline before trusting 'no impact'",
        "Lengthen the baseline or smooth {metric} (robust CV {baseline_cv:.2f}): changes "
        "below ±{tolerance_txt} cannot be told from noise.",
        "A noisy baseline hides real effects; 'no impact' on such a metric is weak evidence.",
        2,
        ("no_impact",),
        minimum={"baseline_cv": 0.5},
    ),
)


# --- context -------------------------------------------------------------------------------


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(x) else None


def _txt(x: float | None, unit: str) -> str | None:
    if x is None:
        return None
    return f"{x:.4g}{' ' + unit if unit else ''}"


def _err_txt(x: float | None, unit: str) -> str | None:
    """An error level in the most readable form: a percentage for ratios, else the unit."""
    if x is None:
        return None
    u = unit.strip().lower()
    if u in ("%", "percent", "pct"):
        return f"{x:.2f}%"
    if u in ("ratio", "fraction", "share", "") and 0 <= x <= 1:
        return f"{x * 100:.2f}%"
    return _txt(x, unit)


def _put(ctx: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        ctx[key] = value


def build_context(
    finding: Mapping[str, Any],
    metric_evidence: Mapping[str, Any] | None = None,
    *,
    fault: Mapping[str, Any] | None = None,
    intensity: float | None = None,
    interval_s: float | None = None,
    fault_duration: float | None = None,
) -> dict[str, Any]:
    """Every number a template may quote, derived from one finding and the run's fault.

    ``metric_evidence`` is the evidence of the metric's main (during) finding, used when
    the finding itself carries little (a hypothesis violation names only the rule).
    """
    ev = {**(metric_evidence or {}), **(finding.get("evidence") or {})}
    fault = fault or {}
    params = fault.get("params") or {}
    fault_type = str(fault.get("type") or "")
    unit = str(ev.get("unit") or "")
    ctx: dict[str, Any] = {
        "metric": finding.get("metric", ""),
        "kind": finding.get("kind"),
        "role": ev.get("role") or (metric_evidence or {}).get("role"),
        "unit": unit,
        "fault_type": fault_type or "the fault",
        "fault_family": fault_type.split(".", 1)[0] if fault_type else None,
        "proxy_or_target": params.get("proxy") or "the target",
        "component_txt": (
            f"{ev['component']} ({finding.get('metric', '')})"
            if ev.get("component")
            else f"the component behind {finding.get('metric', '')}"
        ),
    }
    for key in ("latency_ms", "jitter_ms", "rate_kbps", "reset_after_ms", "close_after_ms"):
        _put(ctx, key, _num(params.get(key)))
    _put(ctx, "intensity_pct", None if intensity is None else intensity * 100)

    phases = ev.get("phases") or {}
    to_ms = _TIME_UNIT_TO_MS.get(unit.strip().lower())
    for phase in ("baseline", "during", "recovery"):
        stats = phases.get(phase) or {}
        for q in ("median", "p95", "p99"):
            v = _num(stats.get(q))
            if v is not None:
                ctx[f"{q}_{phase}"] = v
                if to_ms is not None:
                    ctx[f"{'p50' if q == 'median' else q}_{phase}_ms"] = v * to_ms
    if "p99_during_ms" in ctx:
        ctx["timeout_ms"] = ctx["p99_during_ms"] * 1.5
        ctx["budget_ms"] = ctx["timeout_ms"] * 2
        ctx["slow_call_ms"] = max(ctx.get("p99_baseline_ms", 0.0) * 2, 1.0)
        ctx["connect_timeout_ms"] = max(3 * ctx.get("p99_baseline_ms", 0.0), 100.0)
    if "p50_baseline_ms" in ctx:
        ctx["backoff_base_ms"] = max(ctx["p50_baseline_ms"] * 2, 50.0)
        ctx["backoff_cap_ms"] = max(ctx["backoff_base_ms"] * 20, 1000.0)
        ctx["pool_wait_ms"] = max(ctx.get("p99_baseline_ms", 0.0) * 2, 50.0)
    else:
        ctx["backoff_base_ms"] = 100.0
        ctx["backoff_cap_ms"] = 2000.0
        ctx["pool_wait_ms"] = 250.0
    md, p99 = ctx.get("median_during"), ctx.get("p99_during")
    if md and p99 is not None and md > 0:
        ctx["tail_ratio"] = p99 / md

    base_med, win_med = _num(ev.get("baseline_median")), _num(ev.get("window_median"))
    _put(ctx, "baseline_median", base_med)
    _put(ctx, "window_median", win_med)
    _put(ctx, "baseline_median_txt", _txt(base_med, unit))
    _put(ctx, "window_median_txt", _txt(win_med, unit))
    _put(ctx, "recovery_median_txt", _txt(ctx.get("median_recovery"), unit))
    _put(ctx, "baseline_p95_txt", _txt(_num(ev.get("baseline_p95")), unit))
    _put(ctx, "window_p95_txt", _txt(_num(ev.get("window_p95")), unit))
    if ctx.get("role") == "errors":
        _put(ctx, "err_baseline_txt", _err_txt(ctx.get("median_baseline", base_med), unit))
        _put(ctx, "err_during_txt", _err_txt(ctx.get("median_during", win_med), unit))
    rel = _num(ev.get("relative_effect"))
    if rel is not None:
        ctx["relative_pct"] = rel * 100
        ctx["relative_abs"] = abs(rel)
    _put(ctx, "p_adjusted", _num(ev.get("p_adjusted")) or _num(ev.get("p_value")))
    tol = _num(ev.get("tolerance"))
    _put(ctx, "tolerance_txt", _txt(tol, unit))
    _put(ctx, "baseline_cv", _num(ev.get("baseline_cv")))
    if base_med is not None and tol is not None:
        sign = -1.0 if ev.get("better") == "higher" else 1.0
        ctx["liveness_threshold_txt"] = _txt(base_med + sign * 2 * tol, unit)
        ctx["shed_at_txt"] = _txt(base_med + sign * 3 * tol, unit)

    ceiling, share = _num(ev.get("ceiling")), _num(ev.get("ceiling_share"))
    if ceiling and share is not None:
        ctx["ceiling"] = ceiling
        ctx["ceiling_share_pct"] = share * 100
        base_p95 = _num(ev.get("baseline_p95"))
        if base_p95 is not None:
            ctx["baseline_share_pct"] = base_p95 / ceiling * 100
            ctx["headroom_pct"] = min(70.0, max(40.0, ctx["baseline_share_pct"]))
        ctx["scale_at_pct"] = 70.0

    step = interval_s or 1.0
    tti, ttr = _num(ev.get("time_to_impact_s")), _num(ev.get("time_to_recover_s"))
    _put(ctx, "tti_s", tti)
    if ttr is not None:
        ctx["ttr_s"] = ttr
        ctx["ttr_intervals"] = ttr / step
        ctx["reconnect_cap_s"] = max(step, min(30.0, ttr / 4))
    duration = fault_duration if fault_duration is not None else _num(ev.get("fault_duration_s"))
    if duration:
        ctx["fault_duration_s"] = duration
        if ttr is not None:
            ctx["ttr_share_pct"] = ttr / duration * 100
        ctx["dns_ttl_s"] = max(60.0, duration * 2)
        ctx["stale_s"] = max(30.0, duration * 2)
        ctx["breaker_cooldown_s"] = max(5.0, min(60.0, duration / 4))
        ctx["drain_s"] = max(5.0, min(30.0, duration / 2))
    ctx["breaker_threshold_pct"] = 50.0
    ctx["breaker_window_s"] = max(10.0, 10 * step)
    ctx["probe_period_s"] = max(1.0, 2 * step)
    ctx["scale_window_s"] = max(30.0, 5 * step)
    ctx["liveness_window_s"] = max(30.0, 10 * step)
    rec_n = _num(phases.get("recovery", {}).get("n")) if phases else None
    if rec_n:
        ctx["recovery_window_s"] = rec_n * step
    area = _num(ev.get("degradation_area"))
    if area is not None:
        ctx["area_txt"] = f"{area:.4g} {unit + '·s' if unit else 'unit·s'}"

    if finding.get("kind") == "hypothesis_violated":
        ctx["aggregate"] = ev.get("aggregate", "p95")
        ctx["rule_phase"] = ev.get("phase", "during")
        _put(ctx, "threshold_txt", _txt(_num(ev.get("effective_threshold")), unit))
        _put(ctx, "observed_txt", _txt(_num(ev.get("observed")), unit))
        margin = _num(ev.get("margin"))
        _put(ctx, "margin_pct", None if margin is None else margin * 100)
    return ctx


def _render(advice: Advice, ctx: Mapping[str, Any]) -> str | None:
    try:
        return advice.template.format_map(ctx)
    except (KeyError, ValueError, TypeError):
        return None


def recommend(
    findings: Iterable[Mapping[str, Any]],
    *,
    fault: Mapping[str, Any] | None = None,
    intensity: float | None = None,
    interval_s: float | None = None,
    fault_duration: float | None = None,
    catalogue: Iterable[Advice] = CATALOGUE,
    limit: int | None = 12,
) -> list[dict[str, Any]]:
    """Ranked advice for a run's findings (dicts as produced by ``Finding.to_dict``)."""
    findings = list(findings)
    main: dict[str, Mapping[str, Any]] = {}
    for f in findings:
        ev = f.get("evidence") or {}
        if "phases" in ev and (f.get("metric") not in main or ev.get("phase") == "during"):
            main[f.get("metric", "")] = ev
    contexts = [
        (
            f,
            build_context(
                f,
                main.get(f.get("metric", "")),
                fault=fault,
                intensity=intensity,
                interval_s=interval_s,
                fault_duration=fault_duration,
            ),
        )
        for f in findings
    ]
    best: dict[str, dict[str, Any]] = {}
    for advice in catalogue:
        for f, ctx in contexts:
            if not advice.matches(ctx):
                continue
            text = _render(advice, ctx)
            if text is None:
                continue
            rank = (
                _SEVERITY_WEIGHT.get(str(f.get("severity")), 0.2)
                * float(f.get("confidence") or 0.0)
                * advice.priority
                / 5.0
            )
            entry = best.get(advice.id)
            if entry is None:
                best[advice.id] = {
                    "id": advice.id,
                    "title": advice.title,
                    "advice": text,
                    "rationale": advice.rationale,
                    "priority": advice.priority,
                    "rank": round(rank, 4),
                    "metric": f.get("metric", ""),
                    "finding_kind": f.get("kind"),
                    "severity": f.get("severity"),
                    "metrics": [f.get("metric", "")],
                }
            else:
                if f.get("metric", "") not in entry["metrics"]:
                    entry["metrics"].append(f.get("metric", ""))
                if rank > entry["rank"]:
                    entry.update(
                        advice=text,
                        rank=round(rank, 4),
                        metric=f.get("metric", ""),
                        finding_kind=f.get("kind"),
                        severity=f.get("severity"),
                    )
    ranked = sorted(best.values(), key=lambda r: (-r["rank"], -r["priority"], r["id"]))
    for r in ranked:
        r["metrics"] = sorted(r["metrics"])
    return ranked[:limit] if limit is not None else ranked
