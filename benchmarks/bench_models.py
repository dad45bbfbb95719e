"""Model-selection figures: every candidate and the champion on held-out data.

bank-full (UCI bank marketing, without `duration`):
  * random: stratified random 20% holdout (random_state=42)
  * time:   the last 20% of rows (strong drift: conversion 6.7% before, 31.6% after)
demo:      the pipeline's snapshot split (train = older closed leads, test = most recent 3 months)

Selection (out-of-fold, tuning within the budget, ensemble, calibration) only sees the training part;
the holdout is scored once. Prints ROC-AUC, PR-AUC, Brier and ECE per candidate and for the champion,
and the wall time of the whole selection.

    python benchmarks/bench_models.py --dataset bank-random --time-budget 120
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from leadscore.core.config import DecisionParams, load_params
from leadscore.data.crm import snapshot_schema
from leadscore.data.schema import infer_schema, prepare_features
from leadscore.data.tables import coerce_target, read_table
from leadscore.evaluation.metrics import classification_metrics
from leadscore.training.build import build_model
from leadscore.training.selection import SelectionSettings, build_estimator

BANK = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "bank-marketing" / "bank-full.csv"
CANDIDATES = ("logistic", "random_forest", "xgboost", "lightgbm", "catboost")


def bank(split: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series, object, None]:
    frame = read_table(BANK).drop(columns=["duration"])
    y = coerce_target(frame.pop("y"), "y").astype(int)
    if split == "random":
        train, test = train_test_split(np.arange(len(frame)), test_size=0.2, random_state=42, stratify=y)
    else:
        cut = int(len(frame) * 0.8)
        train, test = np.arange(cut), np.arange(cut, len(frame))
    schema = infer_schema(frame.iloc[train])  # the same defaults as `leadscore fit`
    X = prepare_features(frame, schema)
    return X.iloc[train], X.iloc[test], y.iloc[train], y.iloc[test], schema, None


def demo() -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series, object, pd.Series]:
    params = load_params("params.yaml")
    train = read_table("artifacts/split/train.parquet")
    test = read_table("artifacts/split/test.parquet")
    schema = snapshot_schema(train, params)
    return (prepare_features(train, schema), prepare_features(test, schema), train["label"].astype(int),
            test["label"].astype(int), schema, train["created_at"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["bank-random", "bank-time", "demo"], default="bank-random")
    parser.add_argument("--time-budget", type=float, default=120.0, help="tuning seconds, all candidates")
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES))
    parser.add_argument("--out", default="benchmarks/out", help="folder for the JSON result")
    args = parser.parse_args()
    X_train, X_test, y_train, y_test, schema, times = (
        demo() if args.dataset == "demo" else bank(args.dataset.split("-")[1]))
    settings = SelectionSettings(candidates=tuple(args.candidates), time_budget=args.time_budget or None,
                                 seed=42)
    started = time.perf_counter()
    champion = build_model(X_train, y_train, schema, settings, times=times,
                              decision=DecisionParams(objective="f1", capacity_share=None,
                                                      target_precision=None))
    seconds = time.perf_counter() - started
    rows = {}
    for name, result in champion.selection.candidates.items():
        model = build_estimator(name, schema, result.params, settings).fit(X_train, y_train)
        rows[name] = classification_metrics(y_test, model.predict_proba(X_test)[:, 1])
    rows["champion"] = classification_metrics(y_test, champion.scorer.predict_proba(X_test)[:, 1])
    table = pd.DataFrame(rows).T[["roc_auc", "pr_auc", "brier", "ece", "log_loss"]]
    print(f"dataset {args.dataset}: train {len(y_train):,} rows ({y_train.mean():.1%} positive), "
          f"test {len(y_test):,} rows ({y_test.mean():.1%} positive)")
    print(table.round(4).to_string())
    print(f"champion: {champion.selection.champion} {champion.selection.weights}, calibration "
          f"{champion.selection.calibration.method}; selection wall time {seconds:.0f} s "
          f"(time budget {args.time_budget:.0f} s)")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"models-{args.dataset}.json").write_text(json.dumps(
        {"table": table.round(6).to_dict("index"), "champion": champion.selection.champion,
         "weights": champion.selection.weights, "seconds": round(seconds, 1),
         "time_budget": args.time_budget}, indent=2) + "\n")


if __name__ == "__main__":
    main()
