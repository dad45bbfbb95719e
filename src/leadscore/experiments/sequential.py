"""Always-valid sequential analysis of the difference in conversion rates, safe to read every day.

The mixture sequential probability ratio test (mSPRT) with a normal mixing distribution, from Johari,
Pekelis & Walsh, "Always valid inference: continuous monitoring of A/B tests" (2022), the form used by
Optimizely and Eppo. For an estimated difference ``d`` with variance ``V`` and mixing variance ``tau2``
the mixture likelihood ratio of "some difference" against "none" is::

    Lambda = sqrt(V / (V + tau2)) * exp(d**2 * tau2 / (2 * V * (V + tau2)))

Its inverse, kept at its running minimum over the looks, is a p-value that stays valid however often
it is read and whenever the experiment is stopped; unlike a fixed-horizon test read every day, whose
false-positive rate grows with every look (:func:`sequential_looks` shows both side by side).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from leadscore.core.exceptions import ConfigError, DataValidationError
from leadscore.experiments.assignment import ARMS
from leadscore.experiments.proportions import check_alpha, two_proportion_lift

LEAD_COLUMNS = ("arm", "assigned_at", "converted")


@dataclass(frozen=True)
class Look:
    """The experiment as read at the end of one period, on every lead assigned until then.

    ``fixed_*`` are the fixed-horizon Wald interval and z-test p-value (valid only for a single, planned
    look); ``seq_*`` the always-valid confidence sequence and p-value.
    """

    day: pd.Timestamp
    n_control: int
    n_treatment: int
    conversions_control: int
    conversions_treatment: int
    diff: float
    fixed_low: float
    fixed_high: float
    fixed_p_value: float
    seq_low: float
    seq_high: float
    seq_p_value: float


LOOK_COLUMNS = tuple(f.name for f in fields(Look))


def default_tau2(mde: float) -> float:
    """Mixing variance ``mde ** 2``: the mixture is centred on effects of the size the experiment is
    planned to detect, where the test is then most powerful (Johari et al. tune ``tau2`` to the
    anticipated effect; a much smaller one wastes power on large effects and vice versa)."""
    if not 0 < mde < 1:
        raise ConfigError(f"mde: expected an absolute lift in (0, 1), got {mde!r}")
    return float(mde) ** 2


def _check_tau2(tau2: float) -> float:
    if not tau2 > 0 or not np.isfinite(tau2):
        raise ConfigError(f"tau2: expected a positive mixing variance, got {tau2!r}")
    return float(tau2)


def _log_mixture_lr(diff: Any, variance: Any, tau2: float) -> np.ndarray:
    d, v = np.asarray(diff, float), np.asarray(variance, float)
    v = np.where(v > 0, v, np.nan)                             # no variance: the ratio is undefined
    return 0.5 * np.log(v / (v + tau2)) + d**2 * tau2 / (2 * v * (v + tau2))


def mixture_likelihood_ratio(diff: Any, variance: Any, tau2: float) -> np.ndarray:
    """The mSPRT likelihood ratio ``Lambda`` of each (difference, variance) pair; NaN where the
    variance is not positive.

    Examples
    --------
    >>> float(mixture_likelihood_ratio(0.0, 1.0, 3.0))
    0.5
    """
    tau2 = _check_tau2(tau2)
    with np.errstate(over="ignore"):
        return np.exp(_log_mixture_lr(diff, variance, tau2))


def always_valid_p_values(diffs: Any, variances: Any, tau2: float) -> np.ndarray:
    """Always-valid p-value after each look: the running minimum of ``min(1, 1 / Lambda)``.

    Looks with an undefined ratio do not move the minimum; before the first defined look it is NaN.
    """
    tau2 = _check_tau2(tau2)
    p_values = np.minimum(1.0, np.exp(-_log_mixture_lr(diffs, variances, tau2)))
    return np.fmin.accumulate(np.atleast_1d(p_values))


def confidence_sequence(diffs: Any, variances: Any, tau2: float, alpha: float = 0.05, *,
                        intersect: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Always-valid (1 - alpha) interval of the difference at each look::

        d +/- sqrt(V * (V + tau2) / tau2 * (log((V + tau2) / V) - 2 * log(alpha)))

    With ``intersect`` each interval is intersected with every earlier one (a running maximum of the
    lows and minimum of the highs), which stays valid and then excludes 0 exactly when the always-valid
    p-value is below ``alpha``. An empty intersection (low > high) means the effect moved over time.
    """
    tau2, alpha = _check_tau2(tau2), check_alpha(alpha)
    d, v = np.atleast_1d(np.asarray(diffs, float)), np.atleast_1d(np.asarray(variances, float))
    v = np.where(v > 0, v, np.nan)
    half = np.sqrt(v * (v + tau2) / tau2 * (np.log((v + tau2) / v) - 2 * np.log(alpha)))
    low, high = d - half, d + half
    if intersect:
        low, high = np.fmax.accumulate(low), np.fmin.accumulate(high)
    return low, high


def check_leads(frame: pd.DataFrame) -> pd.DataFrame:
    """The experiment's leads with ``arm``, ``converted`` (0/1 int) and ``assigned_at`` (UTC, naive)
    checked and in canonical form; other columns are kept and the input is not modified.

    Raises
    ------
    DataValidationError
        On missing columns, arms other than control/treatment, outcomes other than 0/1, or missing or
        unreadable assignment times.
    """
    missing = [c for c in LEAD_COLUMNS if c not in frame.columns]
    if missing:
        raise DataValidationError(f"missing columns: {', '.join(missing)}")
    unknown = sorted(set(frame["arm"].astype(str)) - set(ARMS))
    if unknown:
        raise DataValidationError(f"arm: expected 'control' or 'treatment', got {', '.join(unknown[:5])}")
    converted = pd.to_numeric(frame["converted"], errors="coerce")
    if not converted.isin([0, 1]).all():
        raise DataValidationError(f"converted: expected 0 or 1, got {sorted(set(frame['converted']))[:5]}")
    try:
        assigned = pd.to_datetime(frame["assigned_at"], utc=True, format="ISO8601").dt.tz_localize(None)
    except (TypeError, ValueError) as exc:
        raise DataValidationError(f"assigned_at: expected datetimes, got {exc}") from exc
    if assigned.isna().any():
        raise DataValidationError(
            f"assigned_at: expected datetimes, got {int(assigned.isna().sum())} missing")
    return frame.assign(arm=frame["arm"].astype(str), converted=converted.astype(int), assigned_at=assigned)


def _cumulative_counts(leads: pd.DataFrame, freq: str) -> pd.DataFrame:
    treated = (leads["arm"] == "treatment").to_numpy()
    converted = leads["converted"].to_numpy() == 1
    counts = pd.DataFrame({"n_control": ~treated, "n_treatment": treated,
                           "conversions_control": ~treated & converted,
                           "conversions_treatment": treated & converted},
                          index=pd.DatetimeIndex(leads["assigned_at"])).astype(int).sort_index()
    try:
        return counts.resample(freq).sum().cumsum()
    except ValueError as exc:
        raise ConfigError(f"freq: expected a pandas frequency such as 'D' or 'W', got {freq!r}") from exc


def difference_and_variance(conversions_control: npt.ArrayLike, n_control: npt.ArrayLike,
                            conversions_treatment: npt.ArrayLike,
                            n_treatment: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Treatment minus control conversion and its unpooled variance ``pc(1-pc)/nc + pt(1-pt)/nt``,
    elementwise for arrays of counts (NaN where an arm has no leads)."""
    cc, nc = np.asarray(conversions_control, float), np.asarray(n_control, float)
    ct, nt = np.asarray(conversions_treatment, float), np.asarray(n_treatment, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        pc, pt = np.where(nc > 0, cc / nc, np.nan), np.where(nt > 0, ct / nt, np.nan)
        return pt - pc, pc * (1 - pc) / nc + pt * (1 - pt) / nt


def sequential_looks(frame: pd.DataFrame, *, tau2: float, alpha: float = 0.05,
                     freq: str = "D") -> pd.DataFrame:
    """One row per period (``freq``) with the experiment read on all leads assigned until its end.

    Parameters
    ----------
    frame : one row per lead with ``arm`` ("control"/"treatment"), ``converted`` (0/1) and
        ``assigned_at`` (naive times are taken as UTC).
    tau2 : mixing variance of the mSPRT, e.g. :func:`default_tau2` of the planned effect.

    Returns
    -------
    pd.DataFrame
        The :class:`Look` fields as columns, ``day`` the period's label. Statistics are NaN while an arm
        has no leads; the sequential interval is intersected over the looks (see
        :func:`confidence_sequence`), so it agrees with the always-valid p-value.
    """
    tau2, alpha = _check_tau2(tau2), check_alpha(alpha)
    counts = _cumulative_counts(check_leads(frame), freq)
    nc, nt = counts["n_control"].to_numpy(), counts["n_treatment"].to_numpy()
    cc, ct = counts["conversions_control"].to_numpy(), counts["conversions_treatment"].to_numpy()
    diff, variance = difference_and_variance(cc, nc, ct, nt)
    seq_p = always_valid_p_values(diff, variance, tau2)
    seq_low, seq_high = confidence_sequence(diff, variance, tau2, alpha, intersect=True)
    looks = []
    for i, day in enumerate(counts.index):
        fixed = two_proportion_lift(int(cc[i]), int(nc[i]), int(ct[i]), int(nt[i]), alpha)
        looks.append(Look(day, int(nc[i]), int(nt[i]), int(cc[i]), int(ct[i]), float(diff[i]),
                          fixed.absolute_low, fixed.absolute_high, fixed.p_value,
                          float(seq_low[i]), float(seq_high[i]), float(seq_p[i])))
    return pd.DataFrame([asdict(look) for look in looks], columns=list(LOOK_COLUMNS))
