"""The champion/challenger gate: a challenger replaces the champion only on evidence.

Both versions are judged on the same leads (their scores, with matured labels):

1. fewer than ``min_labeled`` leads, or only one outcome among them: **keep** (no evidence either way);
2. DeLong's paired test on ROC-AUC says the challenger ranks worse at level ``alpha``: **reject**;
3. probabilities worse than the champion's by more than a tolerance: Brier score, or ECE when it is also
   beyond what sampling alone gives a perfectly calibrated model on these leads (the 95th percentile of
   its ECE with labels drawn from its own probabilities): **reject**;
4. DeLong says it ranks better at level ``alpha`` (one-sided): **promote**; otherwise **keep** it as
   challenger and wait for more leads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from leadscore.core.config import PromotionParams
from leadscore.evaluation.comparison import delong_roc_test
from leadscore.evaluation.metrics import expected_calibration_error

PROMOTE, KEEP, REJECT = "promote", "keep", "reject"


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided, why, and the figures it decided on."""

    decision: str
    reasons: list[str]
    figures: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2))


def ece_noise(prob: np.ndarray, *, level: float = 0.95, n_sim: int = 200, seed: int = 0) -> float:
    """The ``level`` quantile of the ECE a perfectly calibrated model with probabilities ``prob`` would
    show on this many leads (labels drawn from ``prob``): ECE below it is no evidence of miscalibration."""
    rng = np.random.default_rng(seed)
    draws = [expected_calibration_error((rng.random(len(prob)) < prob).astype(int), prob)
             for _ in range(n_sim)]
    return float(np.quantile(draws, level))


def judge(y_true: Any, champion: Any, challenger: Any, settings: PromotionParams) -> GateDecision:
    """The decision for ``challenger`` against ``champion``: scores of the same leads, labels ``y_true``."""
    y = np.asarray(y_true, int)
    a, b = np.asarray(champion, float), np.asarray(challenger, float)
    figures: dict[str, Any] = {"leads": int(len(y)), "converted": int(y.sum()),
                               "min_labeled": settings.min_labeled, "alpha": settings.alpha}
    if len(y) < settings.min_labeled or len(np.unique(y)) < 2:
        return GateDecision(KEEP, [f"{len(y):,} matured labelled leads scored by both, need "
                                   f"{settings.min_labeled:,} with both outcomes"], figures)
    test = delong_roc_test(y, a, b)
    figures.update({"champion_roc_auc": test["auc_a"], "challenger_roc_auc": test["auc_b"],
                    "roc_auc_diff": test["diff"], "roc_auc_diff_se": test["se"],
                    "p_better": test["p_better"], "p_worse": 1.0 - test["p_better"],
                    "champion_brier": _brier(y, a), "challenger_brier": _brier(y, b),
                    "champion_ece": expected_calibration_error(y, a),
                    "challenger_ece": expected_calibration_error(y, b)})
    reasons = [f"ROC-AUC {test['auc_b']:.4f} vs {test['auc_a']:.4f} (difference {test['diff']:+.4f}, "
               f"SE {test['se']:.4f}, DeLong one-sided p = {test['p_better']:.3g}) on {len(y):,} leads"]
    if figures["p_worse"] < settings.alpha:
        return GateDecision(REJECT, [*reasons, f"worse at the {settings.alpha:g} level"], figures)
    worse_calibration = []
    if figures["challenger_brier"] > figures["champion_brier"] + settings.brier_tolerance:
        worse_calibration.append(f"Brier {figures['challenger_brier']:.4f} vs "
                                 f"{figures['champion_brier']:.4f} (tolerance {settings.brier_tolerance:g})")
    figures["challenger_ece_noise"] = ece_noise(b)
    if figures["challenger_ece"] > max(figures["champion_ece"] + settings.ece_tolerance,
                                       figures["challenger_ece_noise"]):
        worse_calibration.append(f"ECE {figures['challenger_ece']:.4f} vs {figures['champion_ece']:.4f} "
                                 f"(tolerance {settings.ece_tolerance:g}; a calibrated model would reach "
                                 f"{figures['challenger_ece_noise']:.4f} on these leads by chance)")
    if worse_calibration:
        return GateDecision(REJECT, [*reasons, "probabilities worse: " + "; ".join(worse_calibration)],
                            figures)
    if test["p_better"] < settings.alpha:
        return GateDecision(PROMOTE, [*reasons, f"better at the {settings.alpha:g} level; calibration "
                                                "no worse"], figures)
    return GateDecision(KEEP, [*reasons, f"no difference at the {settings.alpha:g} level yet: kept as "
                                         "challenger"], figures)
