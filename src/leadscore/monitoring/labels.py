"""Scores joined to outcomes, with label maturity: when a scored lead may count as a non-converter.

A lead's label is "converted within the label window after it was scored". An outcome that says it
converted inside the window makes it 1 at once; an explicit negative outcome (closed-lost, ``converted``
false) makes it 0 at once; a conversion after the window is a 0. A lead with no outcome is **open** until
the window has passed since its scoring, and only then a 0. An open lead is never a negative.

Only outcomes known at ``now`` count: a conversion is known from ``converted_at``, any other outcome from
``recorded_at`` (when the store received it), so the labels of any past day can be rebuilt.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.core.exceptions import DataValidationError

CONVERTED, LOST, LATE, EXPIRED, OPEN = ("converted", "lost", "converted after the window",
                                        "no outcome, window passed", "open")
SCORE_COLUMNS = ("lead_id", "model_version", "probability", "scored_at")


def first_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """The first score of each lead by each model version (the one sales acted on)."""
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise DataValidationError(f"scores: expected columns {', '.join(SCORE_COLUMNS)}; "
                                  f"missing {', '.join(missing)}")
    frame = scores.assign(lead_id=scores["lead_id"].astype(str),
                          model_version=scores["model_version"].astype(str),
                          scored_at=pd.to_datetime(scores["scored_at"], utc=True))
    frame = frame.sort_values("scored_at", kind="stable")
    return frame.drop_duplicates(["lead_id", "model_version"], keep="first").reset_index(drop=True)


def known_by(outcomes: pd.DataFrame, now: pd.Timestamp) -> pd.DataFrame:
    """The outcomes known at ``now``: conversions from their ``converted_at``, the rest from their
    ``recorded_at``; rows with neither time are always known."""
    known_at = pd.Series(pd.NaT, index=outcomes.index, dtype="datetime64[ns, UTC]")
    for column in ("recorded_at", "converted_at"):
        if column in outcomes:
            times = pd.to_datetime(outcomes[column], utc=True)
            known_at = times.where(times.notna(), known_at) if column == "converted_at" else times
    return outcomes[known_at.isna() | (known_at <= now)]


def label_scores(scores: pd.DataFrame, outcomes: pd.DataFrame, *, window_days: float,
                 now: pd.Timestamp) -> pd.DataFrame:
    """First scores with ``label`` (1.0, 0.0, or NaN while open), ``label_status`` and ``matures_at``.

    ``outcomes`` has lead_id, converted (bool), converted_at (UTC, may be empty) and optionally
    recorded_at; outcomes not yet known at ``now`` (see :func:`known_by`) are ignored.
    """
    frame = first_scores(scores)
    now = pd.Timestamp(now).tz_convert("UTC") if pd.Timestamp(now).tzinfo else pd.Timestamp(now, tz="UTC")
    outcomes = known_by(outcomes, now)
    known = outcomes[["lead_id", "converted", "converted_at"]].assign(
        lead_id=outcomes["lead_id"].astype(str),
        converted_at=pd.to_datetime(outcomes["converted_at"], utc=True))
    frame = frame.merge(known, on="lead_id", how="left")
    deadline = frame["scored_at"] + pd.Timedelta(days=window_days)
    converted = frame["converted"].eq(True)
    in_window = converted & (frame["converted_at"].isna() | (frame["converted_at"] <= deadline))
    late = converted & ~in_window
    lost = frame["converted"].eq(False)
    expired = frame["converted"].isna() & (deadline <= now)
    status = np.select([in_window, late, lost, expired], [CONVERTED, LATE, LOST, EXPIRED], default=OPEN)
    label = np.select([in_window, late | lost | expired], [1.0, 0.0], default=np.nan)
    return frame.assign(label=label, label_status=status, matures_at=deadline)
