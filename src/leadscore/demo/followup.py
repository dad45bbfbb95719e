"""How working leads changes whether they convert: the demo world's sales follow-up, for simulated A/B tests.

The extract written by :mod:`leadscore.demo.generator` is a world where nobody acts on a score. This
module adds the one thing a lead-scoring A/B test changes: **who sales calls, and how soon**.

* A lead is scored when its snapshot is ready, ``created_at + snapshot_days`` (7 days in the demo), and
  from then on it waits in the sales queue.
* The team can make ``calls_per_day`` calls a day (a fractional capacity is spread exactly: day ``k``
  gets ``floor((k + 1) c) - floor(k c)`` calls). At the end of each UTC day it calls the waiting leads
  the arm ranks highest (ties: the earlier scored lead first, then input order). Each call is charged
  to the end of that day, so a lead called the day it is scored waits less than a day.
* A lead not called within :data:`MAX_WAIT_DAYS` of being scored leaves the queue and is never called.
* A call ``w`` days after scoring adds ``FOLLOW_UP_GAIN * exp(-w / FOLLOW_UP_SCALE_DAYS)`` to the
  log-odds of converting within the label window. Without a call a lead keeps its base probability,
  :func:`~leadscore.demo.latent.label_probability` ``(p_convert, snapshot_days, window_days)``.
* A lead that converts in the window converts after the demo's Gamma delay law, conditioned on the
  window (:func:`conversion_days`): a call changes *whether*, not *when*.

The constants follow the spirit of the latent model's first-response term (``RESPONSE_GAIN = 0.60``,
decaying over ``RESPONSE_SCALE_HOURS = 4``): the first response to an enquiry counts within hours, a
follow-up on a week-old lead counts within days, and being called at all counts more than being answered
a little later. :data:`FOLLOW_UP_GAIN` = 1.0 multiplies the odds by ``e = 2.7`` for a call right after
scoring (a 12 % lead becomes a 27 % lead), by 1.4 after two days and by 1.1 after five: large for the one
lead, as a timely call is, yet modest for a team. On the world of ``benchmarks/bench_experiments.py``
(200,000 leads in 2026, a team calling 30 % of them), conversion is 11.9 % without calls, 14.8 % when
the rules baseline ranks and 15.4 % when the trained model does: the A/B lift is +0.64 points (4 %
relative), which about 100,000 leads detect with 80 % power. A gain of 0.6 would leave +0.38 points
(257,000 leads), beyond a demo experiment; more than 1.0 would overstate what one call does.
:data:`FOLLOW_UP_SCALE_DAYS` = 2 halves the effect in 1.4 days, so speed matters within the working week,
and :data:`MAX_WAIT_DAYS` = 5 (a working week) drops leads whose call would add less than a tenth of the
full gain. All is NumPy: one pass over the days, vectorised within each day.

Examples
--------
>>> import numpy as np
>>> day = 86_400_000
>>> work = work_leads(np.array([0, 0, day]), np.array([0.1, 0.1, 0.1]), rank=np.array([1.0, 2.0, 0.0]),
...                   calls_per_day=1, max_wait_days=1)
>>> work.called.tolist(), work.wait_days.round(1).tolist()
([False, True, True], [nan, 1.0, 1.0])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special, stats

from leadscore.core.exceptions import ConfigError, DataValidationError
from leadscore.demo import latent

FOLLOW_UP_GAIN = 1.0           # log-odds added by a call right after scoring
FOLLOW_UP_SCALE_DAYS = 2.0     # ... decaying as exp(-wait / scale)
MAX_WAIT_DAYS = 5.0            # a lead not called within this many days after scoring is never called


@dataclass(frozen=True, eq=False)
class FollowUp:
    """How one policy worked the leads, in input order.

    ``called``: whether the lead was called; ``wait_days``: days from scoring to the call (NaN when not
    called); ``probability``: the lead's probability of converting within the label window, follow-up
    included.
    """

    called: npt.NDArray[np.bool_]
    wait_days: npt.NDArray[np.float64]
    probability: npt.NDArray[np.float64]

    @property
    def conversion(self) -> float:
        """Expected conversion rate of these leads under the policy (NaN without leads)."""
        return float(self.probability.mean()) if self.probability.size else math.nan


def _probabilities(values: npt.ArrayLike, name: str) -> np.ndarray:
    p = np.asarray(values, dtype=float)
    if p.size and (np.isnan(p).any() or p.min() < 0 or p.max() > 1):
        raise DataValidationError(f"{name}: expected probabilities in [0, 1], got values outside")
    return p


def _positive(value: float, name: str, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool) \
        and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ConfigError(f"{name}: expected a finite number {'>=' if allow_zero else '>'} 0, got {value!r}")
    return float(value)


def follow_up_probability(base_probability: npt.ArrayLike, wait_days: npt.ArrayLike) -> np.ndarray:
    """Probability of converting in the window after a call ``wait_days`` after scoring (NaN: no call).

    Examples
    --------
    >>> follow_up_probability([0.12, 0.12, 0.12], [0.0, 2.0, np.nan]).round(3).tolist()
    [0.27, 0.165, 0.12]
    """
    base = _probabilities(base_probability, "base_probability")
    wait = np.asarray(wait_days, dtype=float)
    if wait.shape != base.shape:
        raise DataValidationError(f"wait_days: expected {base.shape[0] if base.ndim else 1} values (one "
                                  f"per lead), got shape {wait.shape}")
    if (wait < 0).any():
        raise DataValidationError("wait_days: expected days >= 0 (or NaN: not called), got negative values")
    gain = np.where(np.isnan(wait), 0.0, FOLLOW_UP_GAIN * np.exp(-np.nan_to_num(wait) / FOLLOW_UP_SCALE_DAYS))
    with np.errstate(divide="ignore"):
        lifted = special.expit(special.logit(base) + gain)  # logit(0) = -inf stays 0, 1 stays 1
    return np.where(gain > 0, lifted, base)


def daily_capacity(scored_ms: npt.ArrayLike, share: float) -> float:
    """Calls a day that reach ``share`` of the leads: ``share`` x leads scored per day on average.

    The days run from the first lead's day to the last one's, inclusive; no leads give 0.

    Examples
    --------
    >>> daily_capacity(np.arange(10) * 43_200_000, 0.5)  # 10 leads over 5 days
    1.0
    """
    if not (isinstance(share, int | float) and 0 < share <= 1):
        raise ConfigError(f"share: expected the share of leads sales can call, in (0, 1], got {share!r}")
    scored = np.asarray(scored_ms, dtype=np.int64)
    if scored.size == 0:
        return 0.0
    days = int(scored.max() // latent.MS_PER_DAY - scored.min() // latent.MS_PER_DAY) + 1
    return float(share) * scored.size / days


def call_waits(scored_ms: npt.ArrayLike, rank: npt.ArrayLike, calls_per_day: float, *,
               max_wait_days: float = MAX_WAIT_DAYS) -> np.ndarray:
    """Days from scoring to the call for each lead, NaN for leads never called (see the module doc).

    Parameters
    ----------
    scored_ms : when each lead was scored, in ms since the epoch (UTC).
    rank : the arm's ranking; higher is called first. Only the order matters.
    calls_per_day : the team's capacity, >= 0; may be fractional.
    max_wait_days : a lead not called within this many days is never called.
    """
    scored = np.asarray(scored_ms, dtype=np.int64)
    ranks = np.asarray(rank, dtype=float)
    if ranks.shape != scored.shape or scored.ndim != 1:
        raise DataValidationError(f"rank: expected one value per lead ({scored.size}), "
                                  f"got shape {ranks.shape}")
    if not np.isfinite(ranks).all():
        raise DataValidationError("rank: expected finite numbers, got NaN or infinite values")
    capacity = _positive(calls_per_day, "calls_per_day", allow_zero=True)
    max_wait_ms = _positive(max_wait_days, "max_wait_days") * latent.MS_PER_DAY
    wait = np.full(scored.size, np.nan)
    if scored.size == 0 or capacity == 0:
        return wait
    order = np.argsort(scored, kind="stable")
    times, ranks = scored[order], ranks[order]
    called = np.zeros(scored.size, dtype=bool)
    waits = np.full(scored.size, np.nan)
    first = int(times[0] // latent.MS_PER_DAY)
    for k in range(int((times[-1] + max_wait_ms) // latent.MS_PER_DAY) - first + 1):
        quota = math.floor((k + 1) * capacity) - math.floor(k * capacity)
        end = (first + k + 1) * latent.MS_PER_DAY
        lo, hi = np.searchsorted(times, [end - max_wait_ms, end], side="left")
        pool = lo + np.flatnonzero(~called[lo:hi])
        if quota == 0 or pool.size == 0:
            continue
        if pool.size > quota:  # highest rank first; among ties the earlier scored (lower position)
            pool = pool[np.lexsort((pool, -ranks[pool]))[:quota]]
        called[pool] = True
        waits[pool] = (end - times[pool]) / latent.MS_PER_DAY
    wait[order] = waits
    return wait


def work_leads(scored_ms: npt.ArrayLike, base_probability: npt.ArrayLike, rank: npt.ArrayLike,
               calls_per_day: float, *, max_wait_days: float = MAX_WAIT_DAYS) -> FollowUp:
    """Work the leads with one ranking and one team: who is called, when, and their probabilities.

    Parameters
    ----------
    scored_ms : scoring time of each lead (ms since the epoch, UTC), e.g. ``created_at + 7 days``.
    base_probability : each lead's probability of converting in the label window without a call.
    rank : the policy's ranking (a score or probability); higher is called first.
    calls_per_day : the team's capacity (see :func:`daily_capacity`).
    max_wait_days : a lead not called within this many days after scoring is never called.

    Raises
    ------
    DataValidationError
        If the arrays differ in length, a probability is outside [0, 1] or a rank is not finite.
    ConfigError
        If the capacity is negative or ``max_wait_days`` is not positive.
    """
    base = _probabilities(base_probability, "base_probability")
    if base.shape != np.shape(scored_ms):
        raise DataValidationError(f"base_probability: expected one value per lead ({np.size(scored_ms)}), "
                                  f"got shape {base.shape}")
    wait = call_waits(scored_ms, rank, calls_per_day, max_wait_days=max_wait_days)
    return FollowUp(called=~np.isnan(wait), wait_days=wait, probability=follow_up_probability(base, wait))


def true_conversion(scored_ms: npt.ArrayLike, base_probability: npt.ArrayLike, rank: npt.ArrayLike,
                    calls_per_day: float, *, max_wait_days: float = MAX_WAIT_DAYS) -> float:
    """Expected conversion rate of the leads when worked by this policy (no sampling noise)."""
    return work_leads(scored_ms, base_probability, rank, calls_per_day,
                      max_wait_days=max_wait_days).conversion


def conversion_days(rng: np.random.Generator, size: int, snapshot_days: float,
                    window_days: float) -> np.ndarray:
    """Days from scoring to conversion of leads that convert in the label window: the demo's Gamma delay
    (:func:`~leadscore.demo.latent.delay_cdf`) conditioned on ``(snapshot_days, snapshot_days +
    window_days]``, minus ``snapshot_days``; drawn by inverting the CDF, so always inside the window."""
    low, high = latent.delay_cdf([snapshot_days, snapshot_days + window_days])
    u = low + (high - low) * rng.random(size)
    delay = stats.gamma.ppf(u, a=latent.DELAY_SHAPE, scale=latent.DELAY_SCALE_DAYS)
    return np.clip(np.asarray(delay, dtype=float) - snapshot_days, 0.0, window_days)


def readme_lines() -> list[str]:
    """The section of the demo data README that documents this mechanism."""
    return [
        "## How working leads changes conversion (A/B simulation)",
        "",
        "The files above are a world where nobody acts on a score. `leadscore.demo.followup` adds",
        "sales follow-up for simulated A/B tests (`leadscore.demo.simulation`). A lead is scored",
        "when its snapshot is ready (created_at + snapshot_days) and waits in a queue; a team that can",
        "make a fixed number of calls a day calls, at the end of each day, the waiting leads its arm ranks",
        f"highest. A lead not called within {MAX_WAIT_DAYS:g} days is never called. A call w days after "
        "scoring adds",
        f"{FOLLOW_UP_GAIN:.2f} * exp(-w / {FOLLOW_UP_SCALE_DAYS:g}) to the log-odds of converting in the "
        f"label window (odds x{math.exp(FOLLOW_UP_GAIN):.1f} at once,",
        f"x{math.exp(FOLLOW_UP_GAIN * math.exp(-2 / FOLLOW_UP_SCALE_DAYS)):.1f} after two days); without "
        "a call the probability stays",
        "`label_probability(p_convert, snapshot_days, window_days)`. A ranking that puts the likely",
        "converters first spends the calls where they count most, so the same team converts more leads.",
        "Working the same leads with each arm's ranking gives the true lift of a simulated A/B test,",
        "which no real experiment knows.",
    ]
