"""The demo CRM's activity log: e-mails, page views, forms, calls and meetings whose intensity follows
each lead's hidden intent, with call notes that hint at it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from leadscore.demo import latent


def _obj(values: np.ndarray) -> pd.Series:
    return pd.Series(values, dtype=object, copy=False)


ACTIVITY_TYPES = ("email_sent", "email_open", "email_click", "page_view", "form_submit",
                  "quote_request", "call_outbound", "call_inbound", "meeting")
OUTBOUND_TYPES = ("email_sent", "call_outbound", "meeting")
PAGES = ("pricing", "quote", "contact", "home", "product", "blog")  # the first 3 signal intent
INTENT_PAGE_SHARE, OTHER_PAGE_SHARE = (0.45, 0.30, 0.25), (0.40, 0.35, 0.25)
FORM_SOURCES = ("web_form", "paid_search", "organic_search", "social_ads")  # the lead is a form
NOTES_GOOD = ("asked about pricing", "budget approved for Q1", "budget approved for Q2",
              "budget approved for Q3", "budget approved for Q4", "wants a quote by end of month",
              "decision maker on the call", "requested a demo", "ready to move forward",
              "asked for contract terms")
NOTES_NEUTRAL = ("comparing us with a competitor", "call back next week", "sent brochure",
                 "needs to check with partner", "asked about coverage options",
                 "renewal coming up in the fall", "follow up after holidays")
NOTES_BAD = ("not interested", "already has coverage", "too expensive", "wrong contact",
             "do not call again")
NOTES_NO_CONTACT = ("left voicemail", "no answer", "busy signal", "gatekeeper, no transfer")
NOTE_BUCKETS = (NOTES_GOOD, NOTES_NEUTRAL, NOTES_BAD, NOTES_NO_CONTACT)
NOTE_EXTRAS = (  # optional second phrase of each bucket: "primary; extra"
    ("call back next week", "sent brochure", "needs to check with partner"),
    ("asked about pricing", "too expensive", "wants a quote by end of month"),
    ("remove from list", "maybe next year"),
    ("will try again tomorrow", "sent follow-up e-mail"),
)
EXTRA_NOTE_SHARE = 0.30
EVENT_HORIZON_DAYS = 12.0   # median time scale of a lead's engagement (exponential offsets)


def _note_bank() -> np.ndarray:
    texts = [p if e is None else f"{p}; {e}" for primary, extras in zip(NOTE_BUCKETS, NOTE_EXTRAS,
                                                                         strict=True)
             for p in primary for e in (None, *extras)]
    return np.array([form for t in texts for form in (t, t[0].upper() + t[1:])] + [None],
                    dtype=object)


def _notes(rng: np.random.Generator, intent: np.ndarray, good_shift: np.ndarray | float,
           no_contact: np.ndarray | bool) -> np.ndarray:
    """Codes into :func:`_note_bank`: the tone of a conversation follows the lead's intent."""
    m = intent.size
    good = special.expit(-0.8 + 0.8 * intent + good_shift)
    bad = (1 - good) * special.expit(-1.2 - 0.8 * intent)
    u = rng.random(m)
    bucket = np.where(no_contact, 3, np.where(u < good, 0, np.where(u < good + bad, 2, 1)))
    n_primary = np.array([len(b) for b in NOTE_BUCKETS])
    n_extra = np.array([len(e) for e in NOTE_EXTRAS])
    size = n_primary * (n_extra + 1) * 2
    offset = (np.cumsum(size) - size)[bucket]
    primary = rng.integers(0, n_primary[bucket])
    extra = np.where(rng.random(m) < EXTRA_NOTE_SHARE, rng.integers(1, n_extra[bucket] + 1), 0)
    return offset + (primary * (n_extra[bucket] + 1) + extra) * 2 + rng.integers(0, 2, m)


def _repeat(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lead index of each event and its position among that lead's events of the same kind."""
    idx = np.repeat(np.arange(counts.size), counts)
    first = np.cumsum(counts) - counts
    return idx, np.arange(idx.size) - first[idx]


def _after(rng: np.random.Generator, base_ms: np.ndarray,
           mean_ms: np.ndarray | float) -> np.ndarray:
    return base_ms + np.rint(rng.exponential(mean_ms)).astype(np.int64)


@dataclass(frozen=True)
class _Leads:
    """What every kind of event is drawn from: the latent leads and their shared engagement."""

    leads: latent.LatentLeads
    src: np.ndarray
    social: np.ndarray
    outbound: np.ndarray
    engage: np.ndarray      # what opens/clicks/visits follow
    tau: np.ndarray         # each lead's engagement time scale (ms)
    touch: np.ndarray       # first response time (ms)

    @property
    def z(self) -> np.ndarray:
        return self.leads.intent

    @property
    def created(self) -> np.ndarray:
        return self.leads.created_ms


Add = Callable[..., None]


def _emails(rng: np.random.Generator, c: _Leads, add: Add) -> None:
    idx, pos = _repeat(1 + rng.poisson(3.6 + 2.0 * c.outbound - 1.0 * (c.src == "referral")))
    later = _after(rng, c.touch[idx] + latent.MS_PER_HOUR, 1.5 * c.tau[idx])
    sends = np.where(pos == 0, c.touch[idx], later)
    add("email_sent", idx, sends)
    opened = rng.random(idx.size) < special.expit(-0.6 + 0.7 * c.engage[idx])
    idx, opens = idx[opened], _after(rng, sends[opened], 8 * latent.MS_PER_HOUR)
    add("email_open", idx, opens)
    clicked = rng.random(idx.size) < special.expit(-1.4 + 0.6 * c.engage[idx] + 1.0 * c.social[idx])
    add("email_click", idx[clicked], _after(rng, opens[clicked], 15 * 60_000))


def _page_views(rng: np.random.Generator, c: _Leads, add: Add) -> None:
    z, created = c.z, c.created
    idx, _ = _repeat(rng.poisson(np.exp(1.55 + 0.5 * c.engage + np.log(2.5) * c.social)))
    first_session = rng.random(idx.size) < 0.4
    views = np.where(first_session, created[idx] + rng.integers(0, 30 * 60_000, idx.size),
                     _after(rng, created[idx], c.tau[idx]))
    intent_page = rng.random(idx.size) < special.expit(-1.0 + 0.7 * z[idx] + 0.3 * c.social[idx])
    page = np.where(intent_page, latent._codes(rng, INTENT_PAGE_SHARE, idx.size),
                    3 + latent._codes(rng, OTHER_PAGE_SHARE, idx.size))
    median_s = np.where(c.social[idx], 12.0, 45.0 * np.exp(0.25 * z[idx]))
    seconds = np.round(median_s * np.exp(0.9 * rng.standard_normal(idx.size)), 1)
    add("page_view", idx, views, duration=seconds, page=page)


def _forms_and_quotes(rng: np.random.Generator, c: _Leads, add: Add) -> None:
    created, conv = c.created, c.leads.converted_ms
    form_lead = np.flatnonzero(np.isin(c.src, FORM_SOURCES))
    add("form_submit", form_lead, created[form_lead])
    idx, _ = _repeat(rng.poisson(0.2 * np.exp(0.4 * c.engage)))
    add("form_submit", idx, _after(rng, created[idx], c.tau[idx]))
    idx, _ = _repeat(rng.poisson(np.exp(-2.1 + 0.9 * c.z)))
    add("quote_request", idx, _after(rng, created[idx], c.tau[idx]))
    idx, _ = _repeat(rng.poisson(1.0 * c.leads.converts))      # just before converting
    add("quote_request", idx, np.maximum(created[idx], conv[idx] - rng.integers(
        0, 10 * latent.MS_PER_DAY, idx.size)))


def _calls(rng: np.random.Generator, c: _Leads, add: Add) -> None:
    z, touch = c.z, c.touch
    idx, pos = _repeat(1 + rng.poisson(1.2 + 1.5 * c.outbound))
    calls = np.where(pos == 0, touch[idx] + rng.integers(0, 2 * latent.MS_PER_HOUR, idx.size),
                     _after(rng, touch[idx], c.tau[idx]))
    reached = rng.random(idx.size) < special.expit(-0.4 + 0.5 * c.engage[idx])
    talk = np.exp(np.log(240.0) + 0.2 * z[idx] + 0.7 * rng.standard_normal(idx.size))
    seconds = np.round(np.where(reached, talk, rng.uniform(5, 40, idx.size)))
    add("call_outbound", idx, calls, duration=seconds,
        note=_notes(rng, z[idx], 0.0, ~reached))
    idx, _ = _repeat(rng.poisson(np.exp(-1.7 + 0.7 * z + 0.3 * c.engage)))
    seconds = np.round(300.0 * np.exp(0.7 * rng.standard_normal(idx.size)))
    add("call_inbound", idx, _after(rng, c.created[idx], c.tau[idx]), duration=seconds,
        note=_notes(rng, z[idx], 0.0, False))


def _meetings(rng: np.random.Generator, c: _Leads, add: Add) -> None:
    z, created, conv = c.z, c.created, c.leads.converted_ms
    idx, _ = _repeat(rng.poisson(np.exp(-2.3 + 0.9 * z)))
    add("meeting", idx, _after(rng, c.touch[idx] + latent.MS_PER_DAY, c.tau[idx]),
        note=_notes(rng, z[idx], 0.0, False))
    idx, _ = _repeat(rng.poisson(0.8 * c.leads.converts))
    add("meeting", idx, np.maximum(created[idx], conv[idx] - rng.integers(
        0, 7 * latent.MS_PER_DAY, idx.size)),
        note=_notes(rng, z[idx], 1.5, False))


def _event_parts(rng: np.random.Generator, leads: latent.LatentLeads) -> list[dict]:
    """Each kind of event as a dict of equal-length arrays: lead, ms, kind, duration, page, note.

    The kinds are drawn in a fixed order from one generator, so the output is reproducible bit for bit.
    """
    n, z = leads.created_ms.size, leads.intent
    src = np.asarray(latent.SOURCES)[leads.source]
    engage = 0.7 * z + 0.5 * rng.standard_normal(n)
    tau = EVENT_HORIZON_DAYS * latent.MS_PER_DAY * np.exp(0.4 * rng.standard_normal(n))
    touch = leads.created_ms + np.rint(leads.response_hours * latent.MS_PER_HOUR).astype(np.int64)
    shared = _Leads(leads, src, src == latent.NEW_SOURCE, src == "outbound", engage, tau, touch)
    parts: list[dict] = []

    def add(kind: str, idx: np.ndarray, ms: np.ndarray, **extra: np.ndarray) -> None:
        code = np.full(idx.size, ACTIVITY_TYPES.index(kind))
        parts.append({"lead": idx, "ms": ms, "kind": code, **extra})

    for draw in (_emails, _page_views, _forms_and_quotes, _calls, _meetings):
        draw(rng, shared, add)
    return parts


def _column(parts: list[dict], key: str, fill: float, dtype: type) -> np.ndarray:
    return np.concatenate([
        np.asarray(p[key], dtype=dtype) if key in p else np.full(p["lead"].size, fill, dtype=dtype)
        for p in parts
    ])


def draw_activities(rng: np.random.Generator, leads: latent.LatentLeads, lead_ids: np.ndarray,
                    start_ms: int, end_ms: int) -> pd.DataFrame:
    """The activity log: events up to data_end (and up to conversion), sorted by lead and time."""
    parts = _event_parts(rng, leads)
    lead = _column(parts, "lead", -1, np.int64)
    ms = _column(parts, "ms", 0, np.int64)
    kind = _column(parts, "kind", -1, np.int64)
    stop = np.where(leads.converts, np.minimum(leads.converted_ms, end_ms), end_ms)
    keep = np.flatnonzero(ms <= stop[lead])
    span = end_ms - start_ms + 1
    if lead.size == 0 or leads.created_ms.size * span < 2**62:
        order = np.argsort(lead[keep] * span + (ms[keep] - start_ms), kind="stable")
    else:
        order = np.lexsort((ms[keep], lead[keep]))
    rows = keep[order]
    lead, kind = lead[rows], kind[rows]
    types = np.array(ACTIVITY_TYPES, dtype=object)
    direction = np.where(np.isin(types, OUTBOUND_TYPES), "outbound", "inbound").astype(object)
    pages = np.array([*PAGES, None], dtype=object)
    return pd.DataFrame({
        "activity_id": np.arange(1, rows.size + 1, dtype=np.int64),
        "lead_id": _obj(lead_ids[lead]),
        "timestamp": ms[rows].astype("datetime64[ms]"),
        "activity_type": _obj(types[kind]),
        "direction": _obj(direction[kind]),
        "duration_sec": _column(parts, "duration", np.nan, np.float64)[rows],
        "page": _obj(pages[_column(parts, "page", -1, np.int64)[rows]]),
        "note": _obj(_note_bank()[_column(parts, "note", -1, np.int64)[rows]]),
    })
