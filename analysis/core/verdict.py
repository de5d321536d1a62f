"""The run's verdict — passed, failed or inconclusive — with a confidence and a reason.

"Inconclusive" is a real answer, not a failure of the engine: a verdict that cannot be
trusted is worse than none, because people act on it. The rules, first match wins:

1. A hypothesis rule failed on enough data → ``failed``; confidence from the sample size
   and how far past the threshold the worst rule is. A failed rule is an observation,
   so noisy baselines or detector disagreement do not soften it.
2. No metrics, or a phase the decision needs has too few samples → ``inconclusive``.
3. With rules, all held → ``passed`` — unless a rule that held only narrowly (margin
   under 25 %) reads a metric whose baseline is too noisy (robust CV above
   :data:`NOISY_BASELINE_CV`): then the pass could be luck → ``inconclusive``.
4. Without rules the engine infers "broken" from the detectors:

   * a metric degraded and did not come back → ``failed`` (confidence x 0.7: no
     hypothesis was stated);
   * the window test and the recovery detector disagree about a degraded metric's
     recovery → ``inconclusive``;
   * a targeted metric shows no detected change but its baseline is too noisy for the
     absence of a change to mean anything → ``inconclusive``;
   * otherwise ``passed`` (confidence x 0.6).

5. An aborted run never ``passed``: it becomes ``inconclusive``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from analysis.core.findings import (
    MetricEvidence,
    change_confidence,
    rule_confidence,
    sample_factor,
)
from analysis.core.model import RunData, Verdict

__all__ = ["NOISY_BASELINE_CV", "VerdictResult", "decide_verdict"]

#: Above this robust coefficient of variation a baseline is too noisy to anchor a
#: "nothing changed" conclusion (MAD·1.4826 larger than half the median).
NOISY_BASELINE_CV = 0.5
#: A passing rule this close to its threshold (relative margin) counts as narrow.
NARROW_MARGIN = 0.25


@dataclass(frozen=True)
class VerdictResult:
    verdict: Verdict
    confidence: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "confidence": self.confidence, "reason": self.reason}


def _too_few(rule: Mapping[str, Any], min_points: int) -> str:
    if rule["n"] < min_points:
        return f"{rule['metric']} has {rule['n']} {rule['phase']} samples (need {min_points})"
    return f"{rule['metric']} has {rule['n_baseline']} baseline samples (need {min_points})"


def _noisy(e: MetricEvidence) -> bool:
    cv = e.baseline_cv
    return cv is not None and cv > NOISY_BASELINE_CV


def _missing(
    rules: list[dict[str, Any]], evidence: Mapping[str, MetricEvidence], min_points: int
) -> list[str]:
    if rules:
        return [
            r["explanation"].rstrip(".") if r["passed"] is None else _too_few(r, min_points)
            for r in rules
            if not r.get("enough_data", True)
        ]
    out = []
    for name, e in evidence.items():
        if e.during_outcome == "insufficient":
            out.append(
                f"{name} has {e.during.baseline.n} baseline and {e.during.window.n} during "
                f"samples (need {min_points})"
            )
        elif e.during_outcome == "degraded" and e.recovery_outcome == "insufficient":
            out.append(f"{name} degraded but has only {e.recovery.window.n} recovery samples")
    return out


def _with_rules(
    rules: list[dict[str, Any]], evidence: Mapping[str, MetricEvidence]
) -> tuple[Verdict, float, str]:
    conf = min(rule_confidence(r) for r in rules)
    shaky = sorted(
        {
            r["metric"]
            for r in rules
            if abs(r.get("margin") or 0.0) < NARROW_MARGIN
            and r["metric"] in evidence
            and _noisy(evidence[r["metric"]])
        }
    )
    if shaky:
        cvs = ", ".join(f"{n} (CV {evidence[n].baseline_cv:.2f})" for n in shaky)
        return (
            "inconclusive",
            conf * 0.5,
            f"All {len(rules)} rule(s) held, but only narrowly, on metrics whose baseline is "
            f"too noisy to trust the margin: {cvs}. Lengthen the baseline or reduce noise.",
        )
    return "passed", conf, f"All {len(rules)} hypothesis rule(s) held."


def _without_rules(evidence: Mapping[str, MetricEvidence]) -> tuple[Verdict, float, str]:
    stuck = [
        e for e in evidence.values() if e.during_outcome == "degraded" and e.recovered is False
    ]
    if stuck:
        names = ", ".join(e.name for e in stuck)
        conf = 0.7 * max(change_confidence(e, e.recovery, e.p_recovery_adj) for e in stuck)
        if all(e.detectors_disagree for e in stuck):
            conf *= 0.5
        return (
            "failed",
            conf,
            f"No hypothesis was given and {names} degraded without recovering after the revert.",
        )
    disagree = [
        e.name for e in evidence.values() if e.during_outcome == "degraded" and e.detectors_disagree
    ]
    if disagree:
        return (
            "inconclusive",
            0.3,
            "Detectors disagree on whether "
            f"{', '.join(disagree)} recovered: the window test and the recovery detector "
            "give different answers. Repeat with a longer recovery window.",
        )
    noisy = [
        e
        for e in evidence.values()
        if not e.metric.collateral
        and e.during_outcome == "ok"
        and _noisy(e)
        and not e.during.within_tolerance
    ]
    if noisy:
        cvs = ", ".join(f"{e.name} (CV {e.baseline_cv:.2f})" for e in noisy)
        return (
            "inconclusive",
            0.2,
            f"No change was detected, but the baseline is too noisy to rule one out: {cvs} "
            f"exceed the robust CV limit {NOISY_BASELINE_CV:g}.",
        )
    conf = 0.6 * min(sample_factor(e.during.n) for e in evidence.values())
    degraded = [e.name for e in evidence.values() if e.during_outcome == "degraded"]
    detail = (
        f"{', '.join(degraded)} degraded during the fault but recovered"
        if degraded
        else "no metric degraded without recovering"
    )
    unclear = [e.name for e in evidence.values() if _moved_unconfirmed(e)]
    if unclear:
        # Still a pass (nothing failed to recover), but a weaker one: the reader must
        # not take these metrics as unaffected.
        conf *= 0.5
        detail += (
            f"; {', '.join(unclear)} moved the wrong way beyond tolerance without the "
            "change being significant, so whether the fault hurt them is unknown"
        )
    return "passed", conf, f"No hypothesis was given and {detail}."


def _moved_unconfirmed(e: MetricEvidence) -> bool:
    """A worse-side shift beyond tolerance that the BH-adjusted test did not confirm."""
    c = e.during
    if e.during_outcome != "ok" or e.metric.collateral or c.shift is None or not c.material:
        return False
    return c.shift.shift > 0 if c.better == "lower" else c.shift.shift < 0


def decide_verdict(
    run: RunData,
    rules: list[dict[str, Any]],
    evidence: Mapping[str, MetricEvidence],
    min_points: int,
) -> VerdictResult:
    """Apply the rules of the module docstring; confidence is clipped to 0..1."""
    failed = [r for r in rules if r["passed"] is False and r.get("enough_data", True)]
    if failed:
        worst = max(failed, key=lambda r: r["margin"] or 0.0)
        more = f" (and {len(failed) - 1} more rule(s))" if len(failed) > 1 else ""
        return VerdictResult(
            "failed", _clip(rule_confidence(worst)), f"{worst['explanation']}{more}".strip()
        )
    if not run.metrics:
        return VerdictResult("inconclusive", 0.0, "No metrics were collected for this run.")
    missing = _missing(rules, evidence, min_points)
    if missing:
        return VerdictResult(
            "inconclusive", 0.0, f"Too little data to judge: {'; '.join(missing)}."
        )
    verdict, conf, reason = _with_rules(rules, evidence) if rules else _without_rules(evidence)
    if run.aborted_reason and verdict == "passed":
        return VerdictResult(
            "inconclusive",
            0.0,
            f"The run was aborted ({run.aborted_reason}), so the hypothesis could not be "
            "confirmed.",
        )
    return VerdictResult(verdict, _clip(conf), reason)


def _clip(x: float) -> float:
    return float(min(1.0, max(0.0, x)))
