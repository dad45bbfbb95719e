"""A seeded, byte-for-byte reproducible demo CRM extract: leads, activities, outcomes and the truth.

The hidden model (intent, ``p_convert``, conversion delay) lives in :mod:`leadscore.demo.latent`;
this module turns it into what a CRM export looks like: messy profile fields, an activity log whose
intensity follows the intent, observed outcomes censored at ``data_end``, and ``sales_status``, a
post-outcome column planted on purpose as leakage. Everything is vectorised NumPy: one million leads
(about 15 million events) generate and write in well under two minutes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import special

from leadscore.core.config import DemoParams
from leadscore.core.exceptions import ConfigError
from leadscore.core.files import atomic_write
from leadscore.demo import followup, latent
from leadscore.demo.activities import draw_activities

DEMO_DEFAULTS: dict = asdict(DemoParams())  # the one home of the demo defaults is core.config.DemoParams
MAX_LEADS = 9_999_999  # lead ids have 7 digits
TRUTH_DECIMALS = 8

PLACEHOLDERS = ("Select", "", "N/A", "unknown", "-", " ")
CASE_VARIANTS = (str.lower, str.upper, lambda s: s + " ", lambda s: " " + s,
                 lambda s: s.upper() + " ")
# column: (share missing, share placeholder, share with other case or stray whitespace)
MESS = {
    "vertical": (0.02, 0.02, 0.05),
    "company_size": (0.06, 0.03, 0.03),
    "region": (0.04, 0.02, 0.03),
    "job_title": (0.08, 0.03, 0.06),
    "email_domain_type": (0.03, 0.01, 0.02),
}
SALES_STATUSES = ("New", "Working", "Closed Won", "Closed Lost", "Disqualified", None)
# shares of New, Working, Closed Won, Closed Lost, Disqualified, missing among non-converted leads
STATUS_BY_AGE = (
    (0.50, 0.35, 0.0, 0.00, 0.05, 0.10),   # up to 30 days old at data_end
    (0.10, 0.50, 0.0, 0.20, 0.10, 0.10),   # 31 to 90 days
    (0.00, 0.10, 0.0, 0.55, 0.30, 0.05),   # older than 90 days
)
COMPANY_WORDS = ("Acme", "Blue River", "Summit", "Pioneer", "Evergreen", "Harbor", "Keystone",
                 "Liberty", "Maple", "Northstar", "Oakridge", "Pinnacle", "Redwood", "Silverline",
                 "Granite", "Lakeside", "Beacon", "Cedar", "Frontier", "Horizon")
COMPANY_KINDS = ("Logistics", "Dental", "Builders", "Foods", "Tech", "Health", "Realty", "Motors",
                 "Consulting", "Manufacturing", "Retail", "Partners")
COMPANY_SUFFIXES = ("Inc", "LLC", "Group", "Co", "Ltd", "Corp")


@dataclass(frozen=True, eq=False)
class CRMData:
    """One demo CRM extract as of ``data_end``.

    ``leads``, ``activities`` and ``outcomes`` are what a CRM export holds (``sales_status`` in
    ``leads`` leaks the outcome on purpose); ``truth`` (lead_id, p_convert) is the latent
    probability of ever converting and must never be used as a feature.
    """

    leads: pd.DataFrame
    activities: pd.DataFrame
    outcomes: pd.DataFrame
    truth: pd.DataFrame
    data_end: pd.Timestamp


def _to_ms(stamp: pd.Timestamp) -> int:
    return int(stamp.as_unit("ms").asm8.astype(np.int64))


def _check_args(n_leads: int, seed: int, start: str, months: int) -> pd.Timestamp:
    for name, value, low in (("n_leads", n_leads, 1), ("seed", seed, 0), ("months", months, 1)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ConfigError(f"{name}: expected an integer >= {low}, got {value!r}")
    if n_leads > MAX_LEADS:
        raise ConfigError(f"n_leads: expected at most {MAX_LEADS} (7-digit ids), got {n_leads}")
    try:
        stamp = pd.Timestamp(start)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"start: expected a date such as '2024-01-01', got {start!r}") from exc
    if stamp is pd.NaT:
        raise ConfigError(f"start: expected a date such as '2024-01-01', got {start!r}")
    if stamp.tz is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.as_unit("ms")


def _obj(values: np.ndarray) -> pd.Series:
    return pd.Series(values, dtype=object, copy=False)


def _messy(rng: np.random.Generator, codes: np.ndarray, categories: tuple[str, ...],
           rates: tuple[float, float, float]) -> pd.Series:
    """Clean labels with shares missing, placeholders ("Select", "N/A") and odd case/spacing."""
    missing, placeholder, variant = rates
    k = len(CASE_VARIANTS) + 1
    forms = [form(c) for c in categories for form in (str, *CASE_VARIANTS)]
    bank = np.array([*forms, *PLACEHOLDERS, None], dtype=object)
    u = rng.random(codes.size)
    pick = codes * k + np.where(u < variant, rng.integers(1, k, codes.size), 0)
    pick = np.where(u >= 1 - missing - placeholder,
                    len(forms) + rng.integers(0, len(PLACEHOLDERS), codes.size), pick)
    return _obj(bank[np.where(u >= 1 - missing, bank.size - 1, pick)])


def _lead_ids(n: int) -> np.ndarray:
    digits = np.strings.zfill(np.arange(1, n + 1).astype(str), 7)
    return np.strings.add("L", digits).astype(object)


def _phones(rng: np.random.Generator, present: np.ndarray) -> pd.Series:
    area = rng.integers(201, 990, present.size).astype(str)
    line = np.strings.zfill(rng.integers(0, 10_000_000, present.size).astype(str), 7)
    numbers = np.strings.add(np.strings.add("+1-", area), np.strings.add("-", line)).astype(object)
    numbers[~present] = None
    return _obj(numbers)


def _company_names(rng: np.random.Generator, present: np.ndarray) -> pd.Series:
    bank = np.array([f"{w} {k} {s}" for w in COMPANY_WORDS for k in COMPANY_KINDS
                     for s in COMPANY_SUFFIXES] + [None], dtype=object)
    return _obj(bank[np.where(present, rng.integers(0, bank.size - 1, present.size), -1)])


def _sales_status(rng: np.random.Generator, created_ms: np.ndarray, observed: np.ndarray,
                  end_ms: int) -> pd.Series:
    """As of data_end: Closed Won iff converted; most old non-converted leads closed."""
    age_days = (end_ms - created_ms) / latent.MS_PER_DAY
    bucket = np.where(age_days > 90, 2, np.where(age_days > 30, 1, 0))
    codes = latent._codes(rng, np.asarray(STATUS_BY_AGE)[bucket], created_ms.size)
    codes = np.where(observed, SALES_STATUSES.index("Closed Won"), codes)
    return _obj(np.array(SALES_STATUSES, dtype=object)[codes])


def _leads_frame(rng: np.random.Generator, leads: latent.LatentLeads, lead_ids: np.ndarray,
                 observed: np.ndarray, end_ms: int) -> pd.DataFrame:
    n = lead_ids.size
    titles = tuple(t[0] for t in latent.TITLES)
    phone_share = special.expit(1.6 + 0.4 * leads.intent)
    company_share = np.where(leads.free_email, 0.65, 0.95)
    return pd.DataFrame({
        "lead_id": _obj(lead_ids),
        "created_at": leads.created_ms.astype("datetime64[ms]"),
        "source": _obj(np.array(latent.SOURCES, dtype=object)[leads.source]),
        "vertical": _messy(rng, leads.vertical, latent.VERTICALS, MESS["vertical"]),
        "company_size": _messy(rng, leads.size, latent.COMPANY_SIZES, MESS["company_size"]),
        "region": _messy(rng, leads.region, latent.REGIONS, MESS["region"]),
        "job_title": _messy(rng, leads.title, titles, MESS["job_title"]),
        "budget": leads.budget,
        "email_domain_type": _messy(rng, leads.free_email.astype(np.int64), ("business", "free"),
                                    MESS["email_domain_type"]),
        "company_name": _company_names(rng, rng.random(n) < company_share),
        "phone": _phones(rng, rng.random(n) < phone_share),
        "sales_status": _sales_status(rng, leads.created_ms, observed, end_ms),
    })


def generate_crm(n_leads: int = DemoParams.n_leads, seed: int = DemoParams.seed,
                 start: str = DemoParams.start, months: int = DemoParams.months, *,
                 new_source_months: int | None = None) -> CRMData:
    """Generate a demo CRM extract; the same arguments always give the same tables.

    Parameters
    ----------
    n_leads : number of leads, created over ``months`` months from ``start``.
    seed : seed of the single random generator everything is drawn from.
    start : first day of the extract (UTC); ``data_end = start + months``.
    months : length of the extract in calendar months.
    new_source_months : the last months in which the new source (``latent.NEW_SOURCE``) exists: the
        drift (default ``latent.NEW_SOURCE_MONTHS``).

    Raises
    ------
    ConfigError
        If an argument is out of range or ``start`` is not a date.

    Examples
    --------
    >>> data = generate_crm(n_leads=200, seed=1)
    >>> len(data.leads), str(data.data_end.date())
    (200, '2025-09-01')
    """
    start_ts = _check_args(n_leads, seed, start, months)
    if new_source_months is not None and (isinstance(new_source_months, bool) or not isinstance(
            new_source_months, int | np.integer) or not 1 <= new_source_months <= months):
        raise ConfigError(f"new_source_months: expected an integer 1 to {months}, got {new_source_months!r}")
    data_end = start_ts + pd.DateOffset(months=months)
    new_months = latent.NEW_SOURCE_MONTHS if new_source_months is None else int(new_source_months)
    new_from = max(start_ts, data_end - pd.DateOffset(months=new_months))
    start_ms, end_ms = _to_ms(start_ts), _to_ms(data_end)
    rng_leads, rng_profile, rng_events = np.random.default_rng(seed).spawn(3)
    leads = latent.draw_latent_leads(rng_leads, n_leads, start_ms, end_ms, _to_ms(new_from))
    lead_ids = _lead_ids(n_leads)
    observed = leads.converts & (leads.converted_ms <= end_ms)
    outcomes = pd.DataFrame({
        "lead_id": _obj(lead_ids),
        "converted": observed.astype(np.int8),
        "converted_at": np.where(observed, leads.converted_ms, np.iinfo(np.int64).min)
        .astype("datetime64[ms]"),
    })
    # Rounded: the last bits of exp() differ between CPUs (SIMD paths), and the bytes must not.
    truth = pd.DataFrame({"lead_id": _obj(lead_ids), "p_convert": np.round(leads.p_convert, TRUTH_DECIMALS)})
    return CRMData(
        leads=_leads_frame(rng_profile, leads, lead_ids, observed, end_ms),
        activities=draw_activities(rng_events, leads, lead_ids, start_ms, end_ms),
        outcomes=outcomes, truth=truth, data_end=data_end,
    )


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd",
                                                   compression_level=3))


def write_crm(data: CRMData, out_dir: str | Path) -> list[Path]:
    """Write the extract as Parquet plus a README; identical data gives identical bytes.

    Files: ``raw/leads.parquet``, ``raw/activities.parquet``, ``raw/outcomes.parquet``,
    ``truth/true_probability.parquet`` and ``README.md`` under ``out_dir``. Each is written to a
    temporary name in its folder and then renamed, so a crash never leaves a half-written file.
    """
    out = Path(out_dir)
    tables = (
        (out / "raw" / "leads.parquet", data.leads),
        (out / "raw" / "activities.parquet", data.activities),
        (out / "raw" / "outcomes.parquet", data.outcomes),
        (out / "truth" / "true_probability.parquet", data.truth),
    )
    for path, frame in tables:
        _write_parquet(frame, path)
    readme = out / "README.md"
    text = render_readme(data)
    atomic_write(readme, lambda tmp: tmp.write_text(text, encoding="utf-8", newline="\n"))
    return [path for path, _ in tables] + [readme]


def _effect_rows() -> list[str]:
    rows = (
        ("base by vertical", latent.VERTICALS, latent.VERTICAL_BASE),
        ("source", latent.SOURCES, latent.SOURCE_EFFECT),
        ("company size", latent.COMPANY_SIZES, latent.SIZE_EFFECT),
        ("seniority 0-3", ("junior", "manager", "director/VP", "executive/owner"),
         latent.SENIORITY_EFFECT),
        ("created month", [str(m) for m in range(1, 13)], latent.MONTH_EFFECT),
    )
    return [f"| {name} | " + ", ".join(f"{k} {v:+.2f}" for k, v in zip(keys, values, strict=True))
            + " |" for name, keys, values in rows]


def render_readme(data: CRMData) -> str:
    """The README written next to the data: files, sizes, observed rates and the latent model."""
    lat = latent
    n_leads, n_events = len(data.leads), len(data.activities)
    created = data.leads["created_at"]
    rate = float(data.outcomes["converted"].mean()) if n_leads else 0.0
    lines = [
        "# Demo CRM extract (generated)",
        "",
        "Synthetic data from `leadscore.demo.generate_crm`; regenerate it, do not edit it.",
        f"{n_leads:,} leads created {created.min():%Y-%m-%d} to {created.max():%Y-%m-%d}, "
        f"{n_events:,} activities, extract date (data_end) {data.data_end:%Y-%m-%d}.",
        f"Observed conversion rate {rate:.2%}.",
        "",
        "| file | rows | content |",
        "|---|---|---|",
        f"| raw/leads.parquet | {n_leads:,} | one row per lead: profile fields (messy: missing "
        "values, placeholders, odd case) and `sales_status` |",
        f"| raw/activities.parquet | {n_events:,} | one row per event: e-mails, page views, forms, "
        "quotes, calls, meetings |",
        f"| raw/outcomes.parquet | {n_leads:,} | converted (0/1) and converted_at as seen at "
        "data_end |",
        f"| truth/true_probability.parquet | {n_leads:,} | p_convert, the latent probability of "
        f"ever converting ({TRUTH_DECIMALS} decimals): for checking calibration, never a feature |",
        "",
        "`sales_status` is filled in by sales after the outcome is known: it leaks the label and",
        f"must not be a feature. The source `{lat.NEW_SOURCE}` exists only in the last "
        f"{lat.NEW_SOURCE_MONTHS} months: its leads engage a lot",
        "but convert much less than that engagement suggests (drift).",
        "",
        "## Latent model",
        "",
        "Each lead has an intent z ~ N(0, 1) and p_convert = sigmoid(logit), where logit adds:",
        "base by vertical, created-month seasonality, company size, a hump in log10 budget "
        f"({lat.BUDGET_TOP:+.2f} at 10^{lat.BUDGET_PEAK_LOG10},",
        f"{lat.BUDGET_MISSING_EFFECT:+.2f} when missing or 0), job-title seniority, senior title x "
        f"company size >= 201 ({lat.SENIOR_LARGE_EFFECT:+.2f}),",
        f"Commercial x partner ({lat.COMMERCIAL_PARTNER_EFFECT:+.2f}), business e-mail "
        f"({lat.BUSINESS_EMAIL_EFFECT:+.2f}), first-response speed",
        f"({lat.RESPONSE_GAIN:.2f} * exp(-hours / {lat.RESPONSE_SCALE_HOURS:g}) - "
        f"{lat.RESPONSE_OFFSET:.2f}), source, and {lat.INTENT_WEIGHT:.2f} * z.",
        "",
        "| effect | values |",
        "|---|---|",
        *_effect_rows(),
        "",
        f"A converting lead converts after Gamma(shape={lat.DELAY_SHAPE:g}, "
        f"scale={lat.DELAY_SCALE_DAYS:g}) days (not truncated);",
        "conversions after data_end are not observed. Engagement (opens, clicks, page views,",
        "calls, meetings) grows with z; converting leads request quotes and meet more just before",
        "they convert. `leadscore.demo.label_probability(p_convert, snapshot_days, window_days)`",
        "gives the exact probability of converting within a label window after a snapshot: the",
        "target a calibrated model should predict.",
        "",
        *followup.readme_lines(),
    ]
    return "\n".join(lines) + "\n"
