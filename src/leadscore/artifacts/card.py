"""Plain-language facts about a saved model, read from its metadata (no model loaded)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MODEL_NAMES = {"logistic": "logistic regression", "lightgbm": "LightGBM", "xgboost": "XGBoost",
               "catboost": "CatBoost", "random_forest": "random forest", "rules": "rule-based score",
               "ensemble": "ensemble"}


def model_name(kind: str) -> str:
    """``lightgbm`` -> ``LightGBM``; unknown kinds unchanged."""
    return MODEL_NAMES.get(kind, kind)


def model_description(meta: Mapping[str, Any]) -> str:
    """What the model is, in one phrase: e.g. "an ensemble of logistic regression 42%, LightGBM 32% and
    CatBoost 26%, calibrated with Platt scaling"."""
    weights = meta.get("weights") or {}
    if len(weights) > 1:
        parts = [f"{model_name(k)} {100 * float(w):.0f}%"
                 for k, w in sorted(weights.items(), key=lambda kv: -float(kv[1]))]
        what = "an ensemble of " + ", ".join(parts[:-1]) + " and " + parts[-1]
    else:
        kind = next(iter(weights), None) or str(meta.get("champion") or meta.get("model") or "model")
        what = f"a {model_name(kind)} model"
    method = (meta.get("calibration") or {}).get("method")
    calibration = {"platt": "Platt scaling", "isotonic": "isotonic regression"}.get(str(method))
    segments = meta.get("segments") or {}
    own = [row["segment"] for row in segments.get("table", []) if row.get("choice") == "segment"]
    extra = f", with its own model for {', '.join(map(str, own))} ({segments.get('column')})" if own else ""
    return what + (f", calibrated with {calibration}" if calibration else "") + extra
