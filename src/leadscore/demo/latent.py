"""The hidden side of the demo CRM: who the leads really are and how likely each one is to convert.

Every lead gets a true profile (source, vertical, company size, region, job title with a latent
seniority, business or free e-mail, budget), a first-response delay and a latent intent
``z ~ N(0, 1)``. Its probability of ever converting is ``p_convert = sigmoid(logit)`` with::

    logit = VERTICAL_BASE[vertical] + MONTH_EFFECT[created month] + SIZE_EFFECT[company size]
          + budget hump: BUDGET_TOP - BUDGET_CURVATURE * (log10(budget) - BUDGET_PEAK_LOG10)**2,
            floored at BUDGET_FLOOR; BUDGET_MISSING_EFFECT when the budget is missing or 0
          + SENIORITY_EFFECT[seniority] + TITLE_EFFECT[title]
          + SENIOR_LARGE_EFFECT if seniority >= 2 and company size >= 201
          + COMMERCIAL_PARTNER_EFFECT if vertical is Commercial and source is partner
          + BUSINESS_EMAIL_EFFECT if the e-mail domain is a business one
          + RESPONSE_GAIN * exp(-response_hours / RESPONSE_SCALE_HOURS) - RESPONSE_OFFSET
          + SOURCE_EFFECT[source]   (social_ads, only in the last 4 months, is strongly negative)
          + INTENT_WEIGHT * z

A converting lead converts ``delay`` days after ``created_at``, ``delay ~ Gamma(shape=DELAY_SHAPE,
scale=DELAY_SCALE_DAYS)`` (mean 36 days, about 6 % within the first week), independent of everything
else and not truncated (P(delay > 365 d) < 1e-7). :func:`label_probability` uses exactly that law.
Engagement (opens, clicks, page views, calls, meetings) rises with ``z``, so activity counts are
noisy proxies of the intent; nothing observed reveals ``z`` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from scipy import special, stats

from leadscore.core.exceptions import ConfigError, DataValidationError

MS_PER_HOUR = 3_600_000
MS_PER_DAY = 24 * MS_PER_HOUR

SOURCES = ("web_form", "referral", "paid_search", "events", "partner", "outbound",
           "organic_search", "social_ads")
NEW_SOURCE = "social_ads"
NEW_SOURCE_MONTHS = 4          # social_ads exists only in the last 4 months of the extract
NEW_SOURCE_SHARE = 0.20        # its share of new leads once it exists (the others shrink to 80 %)
SOURCE_SHARE = (0.24, 0.10, 0.18, 0.07, 0.08, 0.15, 0.18, 0.0)
SOURCE_EFFECT = (0.15, 0.65, 0.0, 0.25, 0.35, -0.45, 0.10, -1.20)
SOURCE_RESPONSE_HOURS = (1.5, 3.0, 2.0, 20.0, 8.0, 0.3, 2.5, 5.0)  # median first-response delay
RESPONSE_SIGMA = 1.1           # log-normal spread of the response delay
WEEKEND_RESPONSE_FACTOR = 2.5  # leads created on a weekend wait longer

VERTICALS = ("P&C", "Health", "Life", "Commercial")
VERTICAL_SHARE = (0.34, 0.26, 0.18, 0.22)
VERTICAL_BASE = (-3.15, -3.40, -3.85, -2.90)

COMPANY_SIZES = ("1-10", "11-50", "51-200", "201-1000", "1000+")
SIZE_SHARE = (0.30, 0.28, 0.20, 0.13, 0.09)
COMMERCIAL_SIZE_SHARE = (0.12, 0.25, 0.28, 0.20, 0.15)
SIZE_EFFECT = (-0.40, 0.0, 0.25, 0.30, 0.10)
FREE_EMAIL_BY_SIZE = (0.55, 0.30, 0.15, 0.08, 0.05)
NEW_SOURCE_FREE_EMAIL = 0.20   # added to the free-mail share of social_ads leads

REGIONS = ("Northeast", "Southeast", "Midwest", "Southwest", "West")
REGION_SHARE = (0.18, 0.22, 0.20, 0.15, 0.25)

# (title, seniority 0-3, title-specific effect on the logit)
TITLES = (
    ("Student", 0, -0.70), ("Intern", 0, -0.30), ("Assistant", 0, 0.0), ("Analyst", 0, 0.0),
    ("Coordinator", 0, 0.0),
    ("Office Manager", 1, 0.0), ("HR Manager", 1, 0.10), ("Benefits Manager", 1, 0.20),
    ("Account Manager", 1, 0.0), ("Consultant", 1, -0.30), ("Broker", 1, -0.10),
    ("Director of Operations", 2, 0.0), ("Director of HR", 2, 0.10), ("VP of Sales", 2, 0.0),
    ("VP Finance", 2, 0.10), ("Head of Benefits", 2, 0.20),
    ("Owner", 3, 0.10), ("CEO", 3, 0.0), ("Founder", 3, 0.0), ("President", 3, 0.0),
    ("CFO", 3, 0.10), ("COO", 3, 0.0),
)
SENIORITY_EFFECT = (-0.55, 0.0, 0.35, 0.45)
SENIORITY_BY_SIZE = (
    (0.15, 0.25, 0.10, 0.50),
    (0.20, 0.35, 0.20, 0.25),
    (0.22, 0.38, 0.28, 0.12),
    (0.25, 0.40, 0.28, 0.07),
    (0.28, 0.40, 0.28, 0.04),
)
SENIOR_LARGE_EFFECT = 0.45
COMMERCIAL_PARTNER_EFFECT = 0.50
BUSINESS_EMAIL_EFFECT = 0.35

BUDGET_MEDIAN_BY_SIZE = (6_000.0, 20_000.0, 70_000.0, 250_000.0, 900_000.0)  # USD per year
BUDGET_SIGMA = 0.9
BUDGET_MISSING_SHARE = 0.20
BUDGET_ZERO_SHARE = 0.03       # a 0 typed into the form as a placeholder
BUDGET_TOP, BUDGET_CURVATURE, BUDGET_PEAK_LOG10, BUDGET_FLOOR = 0.40, 0.35, 4.7, -0.70
BUDGET_MISSING_EFFECT = -0.25

RESPONSE_GAIN, RESPONSE_SCALE_HOURS, RESPONSE_OFFSET = 0.60, 4.0, 0.10
MONTH_EFFECT = (0.20, 0.15, 0.10, 0.0, -0.05, -0.15, -0.25, -0.15, 0.0, 0.10, 0.15, -0.10)
INTENT_WEIGHT = 1.30

DELAY_SHAPE = 2.0
DELAY_SCALE_DAYS = 18.0

# Lead volume: weekday weights (Mon..Sun), hour-of-day weights, yearly swing, growth over the span.
WEEKDAY_VOLUME = (1.10, 1.05, 1.0, 1.0, 0.90, 0.30, 0.25)
HOUR_VOLUME = (1, 1, 1, 1, 1, 2, 4, 8, 14, 18, 19, 18, 15, 16, 17, 16, 13, 9, 6, 4, 3, 2, 2, 1)
YEARLY_VOLUME_SWING = 0.15     # +15 % in mid-January, -15 % in mid-July
VOLUME_GROWTH = 0.30           # the last day has 30 % more leads than the first


@dataclass(frozen=True, eq=False)
class LatentLeads:
    """True attributes of ``n`` leads, in ``created_ms`` order (codes index the tuples above)."""

    created_ms: npt.NDArray[np.int64]
    source: npt.NDArray[np.int64]
    vertical: npt.NDArray[np.int64]
    size: npt.NDArray[np.int64]
    region: npt.NDArray[np.int64]
    title: npt.NDArray[np.int64]
    free_email: npt.NDArray[np.bool_]
    budget: npt.NDArray[np.float64]          # NaN = not given, 0 = placeholder
    response_hours: npt.NDArray[np.float64]
    intent: npt.NDArray[np.float64]
    p_convert: npt.NDArray[np.float64]
    converts: npt.NDArray[np.bool_]          # converts at some time, observed or not
    converted_ms: npt.NDArray[np.int64]      # created_ms + delay; meaningless where not converts


def _codes(rng: np.random.Generator, shares: npt.ArrayLike, size: int) -> np.ndarray:
    """Categorical draws: one row of shares for all, or one row per draw."""
    cdf = np.cumsum(np.asarray(shares, dtype=float), axis=-1)
    cdf = cdf / cdf[..., -1:]
    u = rng.random(size)
    if cdf.ndim == 1:
        return np.minimum(np.searchsorted(cdf, u, side="right"), cdf.size - 1)
    return np.minimum((u[:, None] >= cdf).sum(axis=1), cdf.shape[1] - 1)


def _calendar(start_ms: int, end_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """Start of each whole day in [start, end) in ms, and its relative lead volume."""
    days = np.arange(start_ms // MS_PER_DAY, -(-end_ms // MS_PER_DAY), dtype=np.int64)
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday
    stamps = days.astype("datetime64[D]")
    day_of_year = (stamps - stamps.astype("datetime64[Y]")).astype(np.int64)
    trend = 1.0 + VOLUME_GROWTH * np.arange(days.size) / max(days.size - 1, 1)
    yearly = 1.0 + YEARLY_VOLUME_SWING * np.cos(2 * np.pi * (day_of_year - 14) / 365.25)
    return days * MS_PER_DAY, trend * yearly * np.asarray(WEEKDAY_VOLUME)[weekday]


def draw_created(rng: np.random.Generator, n: int, start_ms: int, end_ms: int) -> np.ndarray:
    """Sorted creation times (ms) in [start_ms, end_ms) with weekly, daily and yearly patterns."""
    day_ms, weight = _calendar(start_ms, end_ms)
    day = rng.choice(day_ms.size, size=n, p=weight / weight.sum())
    hour = _codes(rng, HOUR_VOLUME, n)
    created = day_ms[day] + hour * MS_PER_HOUR + rng.integers(0, MS_PER_HOUR, n)
    created = np.clip(created, start_ms, end_ms - 1)  # partial first/last day
    return np.sort(created)


def _month_index(ms: np.ndarray) -> np.ndarray:
    return ms.astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64) % 12


def conversion_logit(leads: LatentLeads) -> np.ndarray:
    """The log-odds of converting at all, as documented in the module docstring."""
    seniority = np.array([t[1] for t in TITLES])[leads.title]
    title_effect = np.array([t[2] for t in TITLES])[leads.title]
    has_budget = leads.budget > 0  # NaN compares False
    log_budget = np.log10(np.where(has_budget, leads.budget, 1.0))
    hump = BUDGET_TOP - BUDGET_CURVATURE * (log_budget - BUDGET_PEAK_LOG10) ** 2
    budget_effect = np.where(has_budget, np.maximum(hump, BUDGET_FLOOR), BUDGET_MISSING_EFFECT)
    speed = np.exp(-leads.response_hours / RESPONSE_SCALE_HOURS)
    response = RESPONSE_GAIN * speed - RESPONSE_OFFSET
    return (
        np.asarray(VERTICAL_BASE)[leads.vertical]
        + np.asarray(MONTH_EFFECT)[_month_index(leads.created_ms)]
        + np.asarray(SIZE_EFFECT)[leads.size]
        + budget_effect
        + np.asarray(SENIORITY_EFFECT)[seniority] + title_effect
        + SENIOR_LARGE_EFFECT * ((seniority >= 2) & (leads.size >= 3))
        + COMMERCIAL_PARTNER_EFFECT * ((leads.vertical == 3) & (leads.source == 4))
        + BUSINESS_EMAIL_EFFECT * ~leads.free_email
        + response
        + np.asarray(SOURCE_EFFECT)[leads.source]
        + INTENT_WEIGHT * leads.intent
    )


def _draw_source(rng: np.random.Generator, created_ms: np.ndarray, new_from_ms: int) -> np.ndarray:
    old = np.asarray(SOURCE_SHARE)
    new = old * (1 - NEW_SOURCE_SHARE)
    new[SOURCES.index(NEW_SOURCE)] = NEW_SOURCE_SHARE
    return _codes(rng, np.where((created_ms >= new_from_ms)[:, None], new, old), created_ms.size)


def _draw_budget(rng: np.random.Generator, size: np.ndarray) -> np.ndarray:
    median = np.asarray(BUDGET_MEDIAN_BY_SIZE)[size]
    budget = np.round(median * np.exp(BUDGET_SIGMA * rng.standard_normal(size.size)), -2)
    u = rng.random(size.size)
    budget = np.where(u < BUDGET_ZERO_SHARE, 0.0, np.maximum(budget, 100.0))
    return np.where(u > 1 - BUDGET_MISSING_SHARE, np.nan, budget)


def _draw_title(rng: np.random.Generator, size: np.ndarray) -> np.ndarray:
    seniority = _codes(rng, np.asarray(SENIORITY_BY_SIZE)[size], size.size)
    levels = np.array([t[1] for t in TITLES])
    first = np.searchsorted(levels, seniority, side="left")
    count = np.searchsorted(levels, seniority, side="right") - first
    return first + rng.integers(0, count)


def draw_latent_leads(rng: np.random.Generator, n: int, start_ms: int, end_ms: int,
                      new_source_from_ms: int) -> LatentLeads:
    """Draw every hidden attribute, ``p_convert``, the conversion draw and its time."""
    created = draw_created(rng, n, start_ms, end_ms)
    source = _draw_source(rng, created, new_source_from_ms)
    vertical = _codes(rng, VERTICAL_SHARE, n)
    size = _codes(rng, np.where((vertical == 3)[:, None], COMMERCIAL_SIZE_SHARE, SIZE_SHARE), n)
    free_share = np.asarray(FREE_EMAIL_BY_SIZE)[size] + NEW_SOURCE_FREE_EMAIL * (source == 7)
    weekend = (created // MS_PER_DAY + 3) % 7 >= 5
    response = np.asarray(SOURCE_RESPONSE_HOURS)[source] * np.exp(
        RESPONSE_SIGMA * rng.standard_normal(n)) * np.where(weekend, WEEKEND_RESPONSE_FACTOR, 1.0)
    leads = LatentLeads(
        created_ms=created, source=source, vertical=vertical, size=size,
        region=_codes(rng, REGION_SHARE, n), title=_draw_title(rng, size),
        free_email=rng.random(n) < free_share, budget=_draw_budget(rng, size),
        response_hours=response, intent=rng.standard_normal(n),
        p_convert=np.empty(0), converts=np.empty(0, dtype=bool),
        converted_ms=np.empty(0, dtype=np.int64),
    )
    p_convert = special.expit(conversion_logit(leads))
    delay_ms = np.rint(rng.gamma(DELAY_SHAPE, DELAY_SCALE_DAYS, n) * MS_PER_DAY).astype(np.int64)
    return replace(leads, p_convert=p_convert, converts=rng.random(n) < p_convert,
                   converted_ms=created + np.maximum(delay_ms, 1))


def delay_cdf(days: npt.ArrayLike) -> np.ndarray:
    """P(conversion delay <= days | the lead converts): the Gamma law documented above."""
    return np.asarray(stats.gamma.cdf(np.asarray(days, dtype=float), a=DELAY_SHAPE,
                                      scale=DELAY_SCALE_DAYS))


def label_probability(p_convert: npt.ArrayLike, snapshot_days: float,
                      window_days: float) -> np.ndarray:
    """Probability of converting in the label window, given no conversion by the snapshot.

    ``P(created + s < converted_at <= created + s + w | not converted by created + s)``
    ``= p * (F(s + w) - F(s)) / (1 - p * F(s))`` with ``F`` the delay CDF (:func:`delay_cdf`).

    Parameters
    ----------
    p_convert : probability that each lead converts at all (``truth.p_convert``), in [0, 1].
    snapshot_days : days after ``created_at`` at which features are frozen (s), >= 0.
    window_days : length of the label window after the snapshot (w), >= 0.

    Examples
    --------
    >>> label_probability([0.0, 1.0], 7, 90).round(3).tolist()
    [0.0, 0.969]
    """
    p = np.asarray(p_convert, dtype=float)
    if p.size and (np.isnan(p).any() or p.min() < 0 or p.max() > 1):
        raise DataValidationError("p_convert: expected probabilities in [0, 1], got values outside")
    if not (np.isfinite(snapshot_days) and snapshot_days >= 0):
        raise ConfigError(f"snapshot_days: expected a finite number >= 0, got {snapshot_days!r}")
    if not (np.isfinite(window_days) and window_days >= 0):
        raise ConfigError(f"window_days: expected a finite number >= 0, got {window_days!r}")
    before, by_end = delay_cdf([snapshot_days, snapshot_days + window_days])
    still_open = 1.0 - p * before
    with np.errstate(divide="ignore", invalid="ignore"):
        prob = np.where(still_open > 0, p * (by_end - before) / still_open, 0.0)
    return np.clip(prob, 0.0, 1.0)
