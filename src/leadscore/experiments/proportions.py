"""Conversion rates of the two arms of an A/B experiment: Wilson intervals, the lift with its intervals
and z-test, the sample size a test needs and the power it has.

Every figure comes from statsmodels; this module only checks arguments and keeps undefined cases (an arm
without leads, no conversions at all) to NaN instead of letting them raise or warn.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportion_effectsize,
    proportions_ztest,
)

from leadscore.core.exceptions import ConfigError, DataValidationError
from leadscore.core.jsonsafe import json_safe

NAN = float("nan")


@dataclass(frozen=True)
class ArmRate:
    """Conversion rate of one arm with its Wilson interval (``low``, ``high``)."""

    arm: str
    n: int
    conversions: int
    rate: float
    low: float
    high: float

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-safe values (NaN as None)."""
        return json_safe(asdict(self))


@dataclass(frozen=True)
class Lift:
    """Treatment against control: ``absolute`` = treatment - control rate, ``relative`` = ratio - 1,
    each with its (1 - alpha) interval, and the pooled two-proportion z-test (two-sided)."""

    control_rate: float
    treatment_rate: float
    absolute: float
    absolute_low: float
    absolute_high: float
    relative: float
    relative_low: float
    relative_high: float
    z: float
    p_value: float
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-safe values (NaN as None)."""
        return json_safe(asdict(self))


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """``alpha`` as a float, or ConfigError unless it lies in (0, 1)."""
    if not 0 < alpha < 1:
        raise ConfigError(f"{name}: expected a value in (0, 1), got {alpha!r}")
    return float(alpha)


def check_counts(conversions: int, n: int, arm: str) -> tuple[int, int]:
    """``(conversions, n)`` as ints, or DataValidationError unless 0 <= conversions <= n."""
    if n < 0 or conversions < 0 or conversions > n:
        raise DataValidationError(
            f"{arm}: expected 0 <= conversions <= n, got conversions={conversions}, n={n}")
    return int(conversions), int(n)


def _check_design(base_rate: float, mde: float) -> None:
    if not 0 < base_rate < 1:
        raise ConfigError(f"base_rate: expected a rate in (0, 1), got {base_rate!r}")
    if not (mde > 0 and base_rate + mde < 1):
        raise ConfigError(f"mde: expected an absolute lift in (0, {1 - base_rate:g}), got {mde!r}")


def arm_rate(arm: str, conversions: int, n: int, alpha: float = 0.05) -> ArmRate:
    """Conversion rate of one arm with its Wilson score interval.

    An arm without leads has rate NaN and the uninformative interval (0, 1).

    Examples
    --------
    >>> arm_rate("control", 12, 100).to_dict()["rate"]
    0.12
    """
    conversions, n = check_counts(conversions, n, arm)
    alpha = check_alpha(alpha)
    if n == 0:
        return ArmRate(arm, 0, 0, NAN, 0.0, 1.0)
    low, high = proportion_confint(conversions, n, alpha=alpha, method="wilson")
    return ArmRate(arm, n, conversions, conversions / n, float(low), float(high))


def _relative(c_control: int, n_control: int, c_treatment: int, n_treatment: int,
              alpha: float) -> tuple[float, float, float]:
    if c_control == 0:
        return NAN, NAN, NAN                                   # no control conversions: no ratio
    relative = (c_treatment / n_treatment) / (c_control / n_control) - 1
    if c_treatment == 0:
        return relative, NAN, NAN                              # the log interval needs both counts
    low, high = confint_proportions_2indep(c_treatment, n_treatment, c_control, n_control,
                                           compare="ratio", method="log", alpha=alpha)
    return relative, float(low) - 1, float(high) - 1


def two_proportion_lift(conversions_control: int, n_control: int, conversions_treatment: int,
                        n_treatment: int, alpha: float = 0.05) -> Lift:
    """Absolute and relative lift of treatment over control, their intervals, and the z-test.

    The absolute interval is the Wald interval of the difference; the relative one is the log interval
    of the rate ratio, minus 1; ``z`` and ``p_value`` come from the pooled two-proportion z-test.
    Figures that are undefined for the counts are NaN: everything when an arm has no leads, the
    relative lift without control conversions, its interval when either arm has none, and the Wald
    interval and the z-test when their variance is zero (e.g. no conversions in either arm).

    Raises
    ------
    DataValidationError
        If a count is negative or conversions exceed leads.
    """
    cc, nc = check_counts(conversions_control, n_control, "control")
    ct, nt = check_counts(conversions_treatment, n_treatment, "treatment")
    alpha = check_alpha(alpha)
    if nc == 0 or nt == 0:
        pc, pt = (cc / nc if nc else NAN), (ct / nt if nt else NAN)
        return Lift(pc, pt, pt - pc, NAN, NAN, NAN, NAN, NAN, NAN, NAN, alpha)
    pc, pt = cc / nc, ct / nt
    low = high = z = p_value = NAN
    if pc * (1 - pc) + pt * (1 - pt) > 0:
        low, high = confint_proportions_2indep(ct, nt, cc, nc, compare="diff", method="wald", alpha=alpha)
    if 0 < cc + ct < nc + nt:                                  # pooled rate strictly inside (0, 1)
        z, p_value = proportions_ztest([ct, cc], [nt, nc], alternative="two-sided")
    relative, rel_low, rel_high = _relative(cc, nc, ct, nt, alpha)
    return Lift(pc, pt, pt - pc, float(low), float(high), relative, rel_low, rel_high, float(z),
                float(p_value), alpha)


def required_sample_size(base_rate: float, mde: float, alpha: float = 0.05, power: float = 0.8,
                         split: float = 0.5) -> int:
    """Total leads (both arms) a two-sided fixed-horizon test needs to detect ``mde``.

    Parameters
    ----------
    base_rate : expected control conversion rate.
    mde : minimum detectable effect, an absolute lift (0.02 = two points, from ``base_rate`` to
        ``base_rate + mde``).
    split : share of leads assigned to treatment.

    Uses Cohen's arcsine effect size and the normal power of statsmodels, rounded up.

    Examples
    --------
    >>> required_sample_size(0.10, 0.02)
    7670
    """
    _check_design(base_rate, mde)
    alpha, power = check_alpha(alpha), check_alpha(power, "power")
    split = check_alpha(split, "split")
    effect = proportion_effectsize(base_rate + mde, base_rate)
    n_control = NormalIndPower().solve_power(effect_size=effect, alpha=alpha, power=power,
                                             ratio=split / (1 - split), alternative="two-sided")
    return math.ceil(float(n_control) / (1 - split) - 1e-9)


def achieved_power(base_rate: float, mde: float, n_control: int, n_treatment: int,
                   alpha: float = 0.05) -> float:
    """Power of a two-sided fixed-horizon test with these arm sizes to detect ``mde`` over ``base_rate``
    (NaN while an arm has no leads)."""
    _check_design(base_rate, mde)
    alpha = check_alpha(alpha)
    if n_control < 0 or n_treatment < 0:
        raise DataValidationError(
            f"arm sizes: expected counts >= 0, got n_control={n_control}, n_treatment={n_treatment}")
    if n_control == 0 or n_treatment == 0:
        return NAN
    effect = proportion_effectsize(base_rate + mde, base_rate)
    return float(NormalIndPower().power(effect_size=effect, nobs1=n_control, alpha=alpha,
                                        ratio=n_treatment / n_control, alternative="two-sided"))
