"""What to do with an experiment today: deploy, keep running, iterate, roll back or investigate.

Explicit rules, each with plain-language reasons and their figures, so a sales manager can follow the
recommendation without reading the statistics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from leadscore.core.exceptions import ConfigError, DataValidationError
from leadscore.core.jsonsafe import json_safe
from leadscore.experiments.proportions import Lift, check_alpha
from leadscore.experiments.srm import SampleRatio

ACTIONS = ("deploy", "keep_running", "iterate", "rollback", "investigate")


@dataclass(frozen=True)
class Recommendation:
    """``action`` is one of :data:`ACTIONS`; ``remaining_leads`` is set when the advice is to keep
    running (leads still needed for the planned sample, 0 when it is reached)."""

    action: str
    reasons: tuple[str, ...]
    remaining_leads: int | None

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-safe values."""
        return json_safe(asdict(self))


def _lift_text(lift: Lift) -> str:
    if math.isnan(lift.absolute):
        return "no conversion rate in both arms yet"
    return (f"conversion {lift.control_rate:.2%} in control, {lift.treatment_rate:.2%} in treatment "
            f"({lift.absolute * 100:+.2f} points)")


def _check(alpha: float, days_run: float, min_days: float, n_total: int, required_total: int) -> None:
    check_alpha(alpha)
    if not min_days >= 0 or not days_run >= 0:
        raise ConfigError(f"days: expected days_run and min_days >= 0, got {days_run!r}, {min_days!r}")
    if n_total < 0 or required_total < 0:
        raise DataValidationError(
            f"lead counts: expected n_total and required_total >= 0, got {n_total}, {required_total}")


def recommend(*, lift: Lift, sequential_p: float, srm: SampleRatio, days_run: float, min_days: float,
              n_total: int, required_total: int, alpha: float = 0.05,
              guardrail_breaches: Sequence[str] = ()) -> Recommendation:
    """The action the experiment calls for, by the first rule that applies:

    1. sample ratio mismatch -> "investigate": assignment or logging is broken, the lift is not read;
    2. a guardrail breached, or treatment significantly worse -> "rollback";
    3. treatment significantly better after ``min_days`` -> "deploy";
    4. treatment significantly better before ``min_days`` -> "keep_running" (weekly cycles and early
       enthusiasm must wash out);
    5. planned sample reached and ``min_days`` run, the fixed-horizon z-test (valid at that one planned
       look) significant and positive but the sequential test not yet -> "keep_running": the sequential
       test has less power at the fixed plan's size (about half of the stated power in the simulation of
       ``benchmarks/bench_experiments.py``), so a real effect is not given up on;
    6. not significant, planned sample reached and ``min_days`` run -> "iterate": no detectable
       improvement, try a bolder change;
    7. otherwise "keep_running", with the leads still needed for the planned sample.

    "Significant" means ``sequential_p < alpha``, the always-valid p-value of the mSPRT, so the
    recommendation may be read every day without inflating false positives (a fixed-horizon p-value
    read daily would). A NaN p-value (too little data) counts as not significant.
    """
    _check(alpha, days_run, min_days, n_total, required_total)
    if srm.mismatch:
        return Recommendation("investigate", (
            f"sample ratio mismatch: {srm.observed_treatment_share:.1%} of leads in treatment, "
            f"{srm.expected_treatment_share:.1%} planned (chi-square p = {srm.p_value:.2g} "
            f"< {srm.threshold:g}; {srm.n_control} control, {srm.n_treatment} treatment leads)",
            "do not read the lift: assignment or logging is broken; fix it and restart the experiment",
        ), None)
    significant = not math.isnan(sequential_p) and sequential_p < alpha
    evidence = (f"always-valid p = {sequential_p:.3g} (alpha {alpha:g})" if not math.isnan(sequential_p)
                else "no always-valid p-value yet")
    if guardrail_breaches or (significant and lift.absolute < 0):
        reasons = [f"guardrail breached: {name}" for name in guardrail_breaches]
        if significant and lift.absolute < 0:
            reasons.append(f"treatment converts worse: {_lift_text(lift)}, {evidence}")
        return Recommendation("rollback", tuple(reasons), None)
    remaining = max(required_total - n_total, 0)
    days_left = max(math.ceil(min_days - days_run), 0)
    if significant and lift.absolute > 0:
        if days_run >= min_days:
            return Recommendation("deploy", (
                f"treatment converts better: {_lift_text(lift)}, {evidence}",
                f"ran {days_run:.1f} days, at least the minimum of {min_days:g}",
            ), None)
        return Recommendation("keep_running", (
            f"treatment converts better so far: {_lift_text(lift)}, {evidence}",
            f"minimum duration not reached: {days_run:.1f} of {min_days:g} days, {days_left} days left",
        ), remaining)
    fixed_significant = not math.isnan(lift.p_value) and lift.p_value < alpha
    if n_total >= required_total and days_run >= min_days and fixed_significant and lift.absolute > 0:
        return Recommendation("keep_running", (
            f"at the planned sample the fixed-horizon z-test finds an improvement (p = {lift.p_value:.3g}): "
            f"{_lift_text(lift)}; the always-valid test, which allows reading every day, does not yet "
            f"({evidence})",
            "keep running until it does: the sequential test needs more leads than the fixed plan",
        ), None)
    if n_total >= required_total and days_run >= min_days:
        return Recommendation("iterate", (
            f"no detectable improvement at the planned sample: {_lift_text(lift)}, {evidence}",
            f"{n_total} leads of {required_total} planned, {days_run:.1f} days run; "
            "try a bolder change rather than waiting longer",
        ), None)
    reasons = [f"not significant yet: {_lift_text(lift)}, {evidence}"]
    if remaining:
        reasons.append(f"{remaining} more leads needed for the planned sample "
                       f"({n_total} of {required_total})")
    if days_left:
        reasons.append(f"minimum duration not reached: {days_run:.1f} of {min_days:g} days, "
                       f"{days_left} days left")
    return Recommendation("keep_running", tuple(reasons), remaining)
