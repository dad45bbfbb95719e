"""Monitoring at scale: realized and estimated performance and drift over 1M scored leads with outcomes.

Builds a SQLite store holding --rows logged scores over 26 weeks and outcomes for the leads whose label
matured (not timed), then times what `leadscore monitor performance` and `monitor drift` do:

  * performance: read the log and the outcomes table, join them with label maturity, realized metrics
    per week (ROC-AUC with a 200-resample bootstrap interval, PR-AUC, Brier, ECE, top decile, top tier);
  * estimate: what `monitor estimate` adds: the conversion-delay distribution of matured leads, then per
    week 400 label draws of the open leads (conversion, ROC-AUC, top tier with 95% intervals);
  * drift: 12 numeric (the first one shifted) and 8 categorical prepared features of the same leads
    against a training profile (PSI, KS, unseen categories) per week, plus the score's drift.

Reading the scored leads' input fields back from the log's JSON column is not included in the drift
figure (the features are passed in memory); it is printed separately for 100k rows.

    python benchmarks/bench_monitoring.py --rows 1000000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from leadscore.data.profile import table_profile
from leadscore.monitoring.drift import feature_drift, score_drift
from leadscore.monitoring.estimate import conversion_delay_cdf, estimate_performance
from leadscore.monitoring.labels import label_scores
from leadscore.monitoring.outcomes import OutcomeStore
from leadscore.monitoring.performance import period_of, realized_performance
from leadscore.monitoring.predlog import open_database, read_log

START = datetime(2025, 1, 6, tzinfo=UTC)
NUMERIC, CATEGORICAL = 12, 8


def features(n: int, rng: np.random.Generator, shift: float = 0.0) -> pd.DataFrame:
    data = {f"num_{i}": rng.lognormal(1 + shift * (i == 0), 1, n) for i in range(NUMERIC)}
    for i in range(CATEGORICAL):
        data[f"cat_{i}"] = rng.choice([f"v{j}" for j in range(5 + 3 * i)], n).astype(object)
    return pd.DataFrame(data)


def build_store(path: Path, rows: int, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    url = f"sqlite:///{path}"
    engine, log, outcomes = open_database(url, "predictions", "outcomes")
    prob = rng.beta(1, 6, rows)
    seconds = rng.integers(0, 26 * 7 * 86400, rows)
    scored = [START + timedelta(seconds=int(s)) for s in np.sort(seconds)]
    tiers = np.where(prob >= 0.5, "HIGH_PRIORITY", "LOW_PRIORITY")
    with engine.begin() as conn:
        for start in range(0, rows, 50_000):
            stop = min(rows, start + 50_000)
            conn.execute(sa.insert(log), [
                {"request_id": f"r{i}", "lead_id": f"L{i:07d}", "model_version": "20250101000000",
                 "probability": float(prob[i]), "score": int(100 * prob[i]), "tier": tiers[i], "inputs": {},
                 "outputs": {}, "scored_at": scored[i], "entry": f"e{i}"} for i in range(start, stop)])
    converted = rng.random(rows) < prob
    known = converted | (rng.random(rows) < 0.4)  # every conversion and some explicit losses are recorded
    delay = rng.exponential(20, rows).clip(0, 89)
    rows_out = [{"lead_id": f"L{i:07d}", "converted": bool(converted[i]),
                 "converted_at": scored[i] + timedelta(days=float(delay[i])) if converted[i] else None,
                 "recorded_at": scored[i] + timedelta(days=float(delay[i]) if converted[i] else 30.0)}
                for i in np.flatnonzero(known)]
    OutcomeStore(engine, outcomes).record_many(rows_out)
    engine.dispose()
    return url, prob


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        url, prob = build_store(Path(tmp) / "store.db", args.rows, rng)
        built = time.perf_counter() - started
        print(f"store with {args.rows:,} logged scores built in {built:.1f} s (not timed)")

        t0 = time.perf_counter()
        engine, log, outcomes_table = open_database(url, "predictions", "outcomes")
        scores = read_log(engine, log)
        t1 = time.perf_counter()
        outcomes = OutcomeStore(engine, outcomes_table).frame()
        t2 = time.perf_counter()
        labelled = label_scores(scores, outcomes, window_days=90, now=pd.Timestamp("2025-09-01", tz="UTC"))
        t3 = time.perf_counter()
        table = realized_performance(labelled, by="week", top_tier="HIGH_PRIORITY")
        t4 = time.perf_counter()
        print(f"performance: read log {t1 - t0:.1f} s, read {len(outcomes):,} outcomes {t2 - t1:.1f} s, "
              f"label maturity {t3 - t2:.1f} s, {len(table)} weekly rows of metrics {t4 - t3:.1f} s; "
              f"total {t4 - t0:.1f} s")
        te = time.perf_counter()
        now = pd.Timestamp("2025-09-01", tz="UTC")
        delay = conversion_delay_cdf(labelled, window_days=90, now=now)
        estimated = estimate_performance(labelled, now=now, by="week", delay=delay, top_tier="HIGH_PRIORITY")
        estimate_seconds = time.perf_counter() - te
        print(f"estimate: {len(estimated)} weeks ({int(estimated['open'].sum()):,} open leads), 400 draws "
              f"each, in {estimate_seconds:.1f} s")

        reference = features(200_000, rng)
        profile = table_profile(reference, [c for c in reference if c.startswith("cat_")],
                                scores=rng.beta(1, 6, 200_000), threshold=0.5)
        current = features(args.rows, rng, shift=0.6)  # num_0: PSI about 0.3 every week
        weeks = period_of(scores["scored_at"], "week").to_numpy()
        t5 = time.perf_counter()
        states = []
        for week in np.unique(weeks):
            mask = weeks == week
            drift = feature_drift(profile, current.loc[mask])
            states.append((drift["state"] != "ok").sum())
            score_drift(profile, prob[mask], 0.5)
        t6 = time.perf_counter()
        print(f"drift: {NUMERIC + CATEGORICAL} features x {len(np.unique(weeks))} weeks over "
              f"{args.rows:,} leads in {t6 - t5:.1f} s ({int(np.sum(states))} feature-weeks flagged; "
              "num_0 was shifted)")
        print(f"monitoring {args.rows:,} scored leads with outcomes: "
              f"{t4 - t0 + estimate_seconds + t6 - t5:.1f} s in all")

        t7 = time.perf_counter()
        sample = read_log(engine, log, inputs=True, since=START + timedelta(days=7 * 24))
        print(f"reading {len(sample):,} logged rows with their input JSON: {time.perf_counter() - t7:.1f} s")
        engine.dispose()


if __name__ == "__main__":
    main()
