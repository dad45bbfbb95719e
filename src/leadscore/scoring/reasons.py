"""Plain-language reasons: a lead's largest contributions, in score points and words.

``describe(field, value)`` reads a prepared feature the way a sales rep would ("Requested 2 quotes");
:func:`reason_items` and :func:`reason_texts` pick the top K positive and negative contributions of each
lead (from :mod:`leadscore.scoring.explain`) and render them as ``"Requested 2 quotes (+9)"``.
"""

from __future__ import annotations

import calendar
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from leadscore.core.exceptions import DataValidationError
from leadscore.scoring.explain import Contributions


@dataclass(frozen=True)
class Reason:
    """One feature's push on a lead's score, in plain words."""

    field: str                # prepared feature name
    points: int               # score points, signed: round(100 * contribution)
    text: str                 # e.g. "Opened 5 e-mails in the last 7 days (+12)"


@dataclass(frozen=True)
class FeatureText:
    """How a feature reads: ``text`` is a ``str.format`` template of ``v``; ``(s)`` pluralises unless
    ``v`` shows as 1. ``zero`` replaces it for a value of 0, ``missing`` for a missing value, and
    ``names`` turns a number into a word (``names[int(v)]``)."""

    text: str
    zero: str | None = None
    missing: str | None = None
    names: tuple[str, ...] = ()


def _note(topic: str) -> FeatureText:
    return FeatureText(f"Call notes mention {topic}", zero=f"Call notes: no mention of {topic}",
                       missing="No call notes")


_T = FeatureText
FEATURE_TEXT: dict[str, FeatureText] = {  # the demo CRM snapshot (leadscore.data.snapshot)
    "source": _T("Lead source: {v}", missing="Lead source not given"),
    "vertical": _T("Vertical: {v}"), "region": _T("Region: {v}"), "job_title": _T("Job title: {v}"),
    "company_size": _T("Company size: {v} employees"), "seniority": _T("Seniority: {v}"),
    "email_domain_type": _T("{v} e-mail domain", missing="E-mail domain not given"),
    "budget": _T("Budget ${v:,.0f}"),
    "has_phone": _T("Phone number given", zero="No phone number", missing="Phone number unknown"),
    "has_company_name": _T("Company name given", zero="No company name", missing="Company name unknown"),
    "contact_completeness": _T("Profile {v:.0%} complete"),
    "created_month": _T("Created in {v}", names=tuple(calendar.month_name)),
    "created_dayofweek": _T("Created on a {v}", names=tuple(calendar.day_name)),
    "created_hour": _T("Created at {v:02.0f}:00"),
    "created_on_weekend": _T("Created on a weekend", zero="Created on a weekday"),
    "days_since_creation": _T("Lead created {v:,.0f} day(s) ago"),
    "emails_sent": _T("We sent {v:,.0f} e-mail(s)", zero="No e-mails sent yet"),
    "emails_opened": _T("Opened {v:,.0f} e-mail(s)", zero="Opened none of our e-mails"),
    "emails_clicked": _T("Clicked {v:,.0f} e-mail link(s)", zero="Clicked no e-mail link"),
    "email_open_rate": _T("Opened {v:.0%} of our e-mails", missing="No e-mails sent yet"),
    "email_click_rate": _T("Clicked through {v:.0%} of our e-mails", missing="No e-mails sent yet"),
    **{f"email_opens_{d}d": _T(f"Opened {{v:,.0f}} e-mail(s) in the last {d} days") for d in (7, 30)},
    "page_views": _T("Viewed {v:,.0f} web page(s)"),
    **{f"page_views_{d}d": _T(f"Viewed {{v:,.0f}} web page(s) in the last {d} days") for d in (7, 30)},
    **{f"activities_{d}d": _T(f"{{v:,.0f}} activity record(s) in the last {d} days") for d in (7, 30)},
    "pricing_page_views": _T("Viewed pricing {v:,.0f} time(s)", zero="Never viewed pricing"),
    "time_on_site_min": _T("Spent {v:,.0f} min on the website"),
    "avg_seconds_per_page": _T("{v:,.0f} s per page viewed", missing="No page views yet"),
    "form_submissions": _T("Submitted {v:,.0f} form(s)", zero="No form submitted"),
    "quote_requests": _T("Requested {v:,.0f} quote(s)", zero="No quote requested"),
    "calls_inbound": _T("Called us {v:,.0f} time(s)", zero="Never called us"),
    "calls_outbound": _T("We called {v:,.0f} time(s)", zero="Not called by us yet"),
    "call_minutes": _T("{v:,.0f} min on calls"),
    "meetings": _T("Took {v:,.0f} meeting(s)", zero="No meeting yet"),
    "inbound_events": _T("Reached out to us {v:,.0f} time(s)", zero="Never reached out to us"),
    "outbound_events": _T("We reached out {v:,.0f} time(s)", zero="Not contacted yet"),
    "inbound_outbound_ratio": _T("{v:.1f} inbound events per outbound touch"),
    "active_days": _T("Active on {v:,.0f} day(s)"),
    "days_since_last_activity": _T("Last activity {v:,.0f} day(s) ago", missing="No activity yet"),
    "days_since_last_inbound": _T("Last engaged {v:,.0f} day(s) ago", missing="Never engaged with us"),
    "first_response_hours": _T("First contacted {v:,.0f} h after sign-up", missing="Not contacted yet"),
    **{f"note_{key}": _note(topic) for key, topic in (
        ("budget", "a budget"), ("competitor", "a competitor"), ("timeline", "a timeline"),
        ("decision_maker", "the decision maker"), ("not_interested", "a lack of interest"),
        ("callback", "a call-back"), ("no_answer", "an unanswered call"))},
}
VALUE_WORDS = {"c_level": "C-level", "vp": "VP", "p&c": "P&C"}  # values that need more than "_" -> " "


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _words(field: str) -> str:
    return _capital(" ".join(field.replace("_", " ").split()))


def _number(value: float) -> str:
    if value.is_integer():
        return f"{int(value):,}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


class _Number(float):
    """A float whose plain ``{v}`` shows as 2 or 12.5, not 2.0 or 12.500001."""

    def __format__(self, spec: str) -> str:
        return super().__format__(spec) if spec else _number(float(self))


def _generic(field: str, value: Any) -> str:
    stem, _, suffix = field.rpartition("__")
    if suffix == "present" and not isinstance(value, str):
        return f"{_words(stem)} {'given' if value else 'not given'}"
    if suffix == "free_domain" and not isinstance(value, str):
        return f"{_words(stem)}: {'free' if value else 'business'} e-mail domain"
    if isinstance(value, str):
        return f"{_words(field)}: {VALUE_WORDS.get(value, value.replace('_', ' '))}"
    try:
        return f"{_words(field)}: {_number(float(value))}"
    except (TypeError, ValueError):  # e.g. a timestamp
        return f"{_words(field)}: {value}"


def describe(field: str, value: Any) -> str:
    """Plain words for one feature value, from :data:`FEATURE_TEXT` or a generic fallback.

    Examples
    --------
    >>> describe("quote_requests", 2.0), describe("seniority", "vp"), describe("budget", None)
    ('Requested 2 quotes', 'Seniority: VP', 'Budget not given')
    >>> describe("x [usd]", 12.5)
    'X [usd]: 12.5'
    """
    spec = FEATURE_TEXT.get(field)
    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return _capital(spec.missing) if spec and spec.missing else f"{_words(field)} not given"
    text = None if spec is None else _template(spec, value)
    return _generic(field, value) if text is None else _capital(text)


def _template(spec: FeatureText, value: Any) -> str | None:
    """``spec``'s words for a present value, or None when the value does not fit them."""
    if isinstance(value, str):
        fits = "{v}" in spec.text and not spec.names
        return spec.text.format(v=VALUE_WORDS.get(value, value.replace("_", " "))) if fits else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if spec.zero is not None and number == 0:
        return spec.zero
    if spec.names:
        known = number.is_integer() and 0 <= number < len(spec.names) and spec.names[int(number)]
        return spec.text.format(v=spec.names[int(number)]) if known else None
    text = spec.text.format(v=_Number(number))
    return text.replace("(s)", "" if f"{abs(number):.0f}" == "1" else "s")


def score_points(contrib: Contributions) -> pd.DataFrame:
    """Contributions in score points (the 0-100 score is ``100 * probability``): ``100 * values``."""
    return contrib.values * 100.0


def _picks(raw: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(order, points, up counts, down counts): per row the features by contribution, largest first
    (ties by column), their points ``rint(100 * value)``, and how many to show per side (at most k)."""
    order = np.argsort(-raw, axis=1, kind="stable")
    points = np.rint(100.0 * raw).astype(int)
    up = np.minimum((points > 0).sum(axis=1), k)  # points fall along ``order``: positives lead,
    down = np.minimum((points < 0).sum(axis=1), k)  # negatives trail
    return order, points, up, down, order[:, ::-1]


def _shown(value: Any) -> Any:
    return float(value) if isinstance(value, np.floating) else value


def reason_items(values: np.ndarray, columns: Mapping[str, np.ndarray], fields: list[str],
                 k: int) -> list[dict[str, list[Reason]]]:
    """:func:`top_reasons` on arrays: ``values`` (n, len(fields)) contributions, ``columns`` the
    prepared feature arrays by name (the values shown in the texts)."""
    raw = np.asarray(values, dtype="float64")
    order, points, up, down, reverse = _picks(raw, k)
    shown = [columns[f] for f in fields]
    return [{side: [_reason(fields[j], int(points[r, j]), _shown(shown[j][r])) for j in cols[r, :count[r]]]
             for side, cols, count in (("positive", order, up), ("negative", reverse, down))}
            for r in range(len(raw))]


def _value_key(value: Any) -> tuple[Any, ...]:
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, float) and value == value:
        return ("f", value, math.copysign(1.0, value))  # 0.0 and -0.0 read differently
    return ("r", type(value).__name__, repr(value))


def reason_texts(values: np.ndarray, columns: Mapping[str, np.ndarray], fields: list[str],
                 k: int) -> list[str]:
    """Per row, ``{"positive": [...], "negative": [...]}`` as JSON text (:func:`json.dumps`, non-ASCII
    kept) of :func:`reason_items`, each item ``{"field", "points", "text"}``; identical items are
    rendered once."""
    raw = np.asarray(values, dtype="float64")
    order, points, up, down, reverse = _picks(raw, k)
    shown = [columns[f] for f in fields]
    done: dict[tuple[int, int, Any], str] = {}

    def item(r: int, j: int) -> str:
        value = _shown(shown[j][r])
        key = (j, int(points[r, j]), _value_key(value))
        text = done.get(key)
        if text is None:
            reason = _reason(fields[j], key[1], value)
            item = {"field": reason.field, "points": reason.points, "text": reason.text}
            text = done[key] = json.dumps(item, ensure_ascii=False)
        return text

    return ['{"positive": [' + ", ".join(item(r, j) for j in order[r, :up[r]]) + '], "negative": ['
            + ", ".join(item(r, j) for j in reverse[r, :down[r]]) + "]}" for r in range(len(raw))]


def top_reasons(contrib: Contributions, X: pd.DataFrame, k: int = 3) -> list[dict[str, list[Reason]]]:  # noqa: N803
    """Per row, the ``k`` features that raised the score most and the ``k`` that lowered it most.

    Parameters
    ----------
    contrib : from :func:`contributions` on ``X``.
    X : the prepared features explained (same index), for the values shown in the text.
    k : at most this many reasons per side.

    Returns
    -------
    One ``{"positive": [...], "negative": [...]}`` per row, each side largest first; a feature
    whose points round to 0 is never shown.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
        raise DataValidationError(f"k: expected an integer >= 0, got {k!r}")
    values = contrib.values
    if not isinstance(X, pd.DataFrame) or not X.index.equals(values.index):
        raise DataValidationError("X: expected the prepared features that were explained (same index), "
                                  f"got {type(X).__name__} with a different index")
    absent = [c for c in values.columns if c not in X.columns]
    if absent:
        raise DataValidationError(f"X: expected the explained columns, got none for {absent[:5]}")
    columns = {str(c): X[c].to_numpy(dtype=object) for c in values.columns}
    return reason_items(values.to_numpy(dtype="float64"), columns, [str(c) for c in values.columns], k)


def _reason(field: str, points: int, value: Any) -> Reason:
    return Reason(field, points, f"{describe(field, value)} ({points:+d})")
