"""The demo's hidden truth, for the reports that compare a model's probabilities with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.data.tables import read_table
from leadscore.demo.latent import label_probability


def true_probability(leads: pd.DataFrame, truth_path: str | Path | None, snapshot_days: float,
                     window_days: float) -> np.ndarray | None:
    """Demo data only: each lead's exact probability of converting within its label window (None when
    ``truth_path`` is not given or does not exist: real data has no truth file)."""
    if truth_path is None or not Path(truth_path).exists():
        return None
    p_convert = leads["lead_id"].map(read_table(truth_path).set_index("lead_id")["p_convert"])
    return np.asarray(label_probability(p_convert.to_numpy(float), snapshot_days, window_days))
