"""A model card per version, built from its metadata alone (no model loaded, no data read).

Sections follow Mitchell et al. 2019, "Model Cards for Model Reporting": model details, intended use,
training data, label, features (with the leakage guard's results), evaluation with bootstrap intervals,
calibration, threshold and tiers, per-segment quality, limitations. Each line states a fact recorded
in ``metadata.json``; where a fact was not recorded the card says so instead of guessing.
:mod:`leadscore.artifacts.card_render` turns the card into Markdown and self-contained HTML.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MODEL_NAMES = {"logistic": "logistic regression", "lightgbm": "LightGBM", "xgboost": "XGBoost",
               "catboost": "CatBoost", "random_forest": "random forest", "rules": "rule-based score",
               "ensemble": "ensemble"}
METRIC_NAMES = {"roc_auc": "ROC-AUC (ranking; 0.5 = random)", "pr_auc": "PR-AUC (average precision)",
                "brier": "Brier score (lower is better)", "log_loss": "log loss (lower is better)",
                "ece": "expected calibration error", "top_decile_rate": "conversion in the top 10%",
                "top_decile_lift": "lift of the top 10% over average"}
BUILT_WITH = ("python", "leadscore", "scikit-learn", "lightgbm", "xgboost", "catboost")
WEAK_SEGMENT_LEADS = 300  # smaller segments' ROC-AUC varies too much by chance to name them
WEAK_SEGMENT_GAP = 0.05     # a segment ranking this much worse than overall (ROC-AUC) is named
MISCALIBRATED_GAP = 0.03    # a segment's mean prediction this far from its observed rate (absolute) ...
MISCALIBRATED_RATIO = 0.5   # ... and by more than half the observed rate is named in the limitations
BASE_RATE_SHIFT = 0.2    # relative change of the conversion rate, training vs evaluation, worth a line


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


# --- the card's structure ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Table:
    """A table: column headers and rows of already formatted cells."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Chart:
    """A reliability diagram: (mean predicted, observed rate, leads) per bin."""

    points: tuple[tuple[float, float, int], ...]
    caption: str


Block = str | list[str] | Table | Chart  # a paragraph, a bullet list, a table or a chart


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class ModelCard:
    title: str
    summary: str
    sections: list[Section]


# --- formatting -------------------------------------------------------------------------------------

def _pct(value: Any, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * float(value):.{digits}f}%"


def _num(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}"


def _count(value: Any) -> str:
    return "n/a" if value is None else f"{int(value):,}"


def _day(stamp: Any) -> str:
    return str(stamp)[:10] if stamp else "n/a"


# --- sections ---------------------------------------------------------------------------------------

def _details(meta: Mapping[str, Any], version: str) -> Section:
    packages = meta.get("packages") or {}
    registered = f"registered {meta['registered_at']}" if meta.get("registered_at") else "not registered"
    lines = [f"Version: **{version}**, {registered}; fitted "
             f"{meta.get('created_at', 'n/a')} in {_num(meta.get('fit_seconds'), 0)} s.",
             f"Model: {model_description(meta)}.",
             f"Artifact sha256 `{str(meta.get('sha256', ''))[:16]}...`; "
             f"{'signed' if meta.get('signature') else 'not signed'}.",
             "Built with " + ", ".join(f"{k} {v}" for k, v in packages.items()
                                         if k in BUILT_WITH and v != "not installed") + "."]
    candidates = meta.get("candidates") or {}
    if candidates:
        rows = tuple((model_name(name), _num((c.get("cv_metrics") or {}).get("roc_auc")),
                      _num((c.get("cv_metrics") or {}).get("brier")),
                      "yes" if name in (meta.get("weights") or {}) else "")
                     for name, c in sorted(candidates.items(),
                                           key=lambda kv: -float((kv[1].get("cv_metrics") or {})
                                                                 .get("roc_auc") or 0)))
        return Section("Model details", [lines, "Candidates compared on out-of-fold predictions of the "
                                                "training data (the champion blends those marked):",
                                         Table(("candidate", "ROC-AUC", "Brier", "in champion"), rows)])
    return Section("Model details", [lines])


def _label_text(meta: Mapping[str, Any]) -> str:
    snapshot = meta.get("snapshot") or {}
    if snapshot:
        return (f"1 when the lead converted within {snapshot.get('label_window_days')} days after its "
                f"snapshot, taken {snapshot.get('snapshot_days')} days after the lead was created "
                f"(features use only what was known at the snapshot); leads whose window had not "
                f"closed were left out.")
    return (f"the column `{meta.get('target', '?')}` as given in the training table (1 = converted); "
            f"rows with an empty target were left out.")


def _intended_use(meta: Mapping[str, Any]) -> Section:
    return Section("Intended use", [
        "Rank new leads by their probability of converting, so that sales calls the likeliest first. "
        "Users: sales operations and sales reps (through scores, tiers and reasons), data scientists "
        "(through this card and the reports). The probability is that of the label defined under "
        "training data.",
        ["Out of scope: decisions about people beyond the order of follow-up (credit, pricing, "
         "employment), leads from products, markets or channels absent from the training data, and "
         "reading a score as the effect of an action (the model learned correlations, not causes).",
         "Use the score together with the rep's judgement; the reasons shown with each score are the "
         "model's largest feature contributions, not an explanation of the lead's intent."]])


def _training_data(meta: Mapping[str, Any]) -> Section:
    window = meta.get("training_window") or []
    lines = [f"{_count(meta.get('rows'))} labelled leads, conversion rate {_pct(meta.get('positive_rate'))}.",
             f"Created {_day(window[0])} to {_day(window[-1])} (column `{meta.get('time_column')}`)."
             if window else "No time column: the validation rows were a stratified random sample, which "
                            "overstates how well the model ranks future leads.",
             f"Source: `{meta['source_file']}`." if meta.get("source_file") else
             f"Source: the raw CRM extract with sha256 `{str(meta.get('data_sha256', 'n/a'))[:16]}...`."]
    validation = meta.get("validation") or {}
    if validation.get("method"):
        lines.append(f"Held out for validation: {validation['method']}"
                     + ("; the champion was then refitted on all rows." if meta.get("refit_on_all_rows")
                        else "."))
    return Section("Training data and label", [lines, "Label: " + _label_text(meta)])


def _features(meta: Mapping[str, Any]) -> Section:
    features = meta.get("features") or []
    kinds: dict[str, int] = {}
    for f in features:
        kinds[str(f.get("kind"))] = kinds.get(str(f.get("kind")), 0) + 1
    blocks: list[Block] = [
        f"{len(features)} input columns (" + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) + ")."]
    if features:
        blocks.append(Table(("column", "kind", "missing in training", "required"),
                            tuple((f"`{f.get('name')}`", str(f.get("kind")), _pct(f.get("missing_rate")),
                                   "yes" if f.get("required") else "")
                                  for f in features)))
    excluded = meta.get("excluded_columns") or []
    dropped = meta.get("dropped_columns") or {}
    notes = ["Excluded as post-outcome (filled after the result is known): "
             + (", ".join(f"`{c}`" for c in excluded) if excluded else "none declared") + "."]
    notes += [f"Dropped `{name}`: {reason}." for name, reason in dropped.items()]
    blocks.append(notes)
    findings = meta.get("leakage_findings")
    allowed = meta.get("leakage_allowed") or []
    if findings is None:
        blocks.append("Leakage guard: no result recorded for this version.")
    elif not findings:
        blocks.append("Leakage guard: no column looked filled after the outcome (single-column AUC, "
                      "dominance over all other columns, and predictive missingness were checked)"
                      + (f"; allowed by the user despite a finding: {', '.join(allowed)}."
                         if allowed else "."))
    else:
        blocks.append("Leakage guard findings (declared post-outcome or allowed columns; others stop "
                      "training):")
        blocks.append(Table(("column", "check", "value", "finding"),
                            tuple((f"`{f.get('column')}`", str(f.get("check")), _num(f.get("value")),
                                   str(f.get("message"))) for f in findings)))
    return Section("Features and leakage guard", blocks)


def _evaluation(meta: Mapping[str, Any]) -> Section:
    holdout = meta.get("holdout")
    if not holdout:
        test = meta.get("test_metrics") or {}
        if not test:
            return Section("Evaluation", ["No held-out evaluation was recorded for this version."])
        plain = tuple((METRIC_NAMES.get(k, k), _num(v)) for k, v in test.items() if k in METRIC_NAMES)
        return Section("Evaluation", ["Test metrics recorded without intervals (this version was exported "
                                      "by an earlier release):", Table(("metric", "value"), plain)])
    metrics, ci = holdout.get("metrics") or {}, holdout.get("ci") or {}
    level = _pct(holdout.get("ci_level"), 0)
    rows: tuple[tuple[str, ...], ...] = tuple((METRIC_NAMES[k], _num(metrics.get(k)),
                  f"{_num(ci[k][0])} to {_num(ci[k][1])}" if k in ci else "")
                 for k in ("roc_auc", "pr_auc", "brier", "log_loss") if k in metrics)
    rows += ((METRIC_NAMES["top_decile_rate"], _pct(metrics.get("top_decile_rate")), ""),
             (METRIC_NAMES["top_decile_lift"], f"{_num(metrics.get('top_decile_lift'), 2)}x", ""))
    return Section("Evaluation", [
        f"On the {holdout.get('where')}: {_count(holdout.get('rows'))} leads, "
        f"{_count(holdout.get('positives'))} converted ({_pct(metrics.get('positive_rate'))}).",
        Table(("metric", "value", f"{level} interval ({holdout.get('n_boot')} bootstrap resamples)"), rows)])


def _calibration(meta: Mapping[str, Any]) -> Section:
    calibration = meta.get("calibration") or {}
    scores = calibration.get("scores") or {}
    method = calibration.get("method", "n/a")
    blocks: list[Block] = [f"Calibration method: **{method}**, chosen on out-of-fold predictions of the "
                           "training data" + (":" if scores else ".")]
    if scores:
        blocks.append(Table(("method", "Brier", "log loss", "ECE", "chosen"), tuple(
            (name, _num(s.get("brier"), 4), _num(s.get("log_loss"), 4), _num(s.get("ece"), 4),
             "yes" if name == method else "")
            for name, s in scores.items() if isinstance(s, Mapping))))
    holdout = meta.get("holdout") or {}
    bins = holdout.get("calibration") or []
    if bins:
        metrics = holdout.get("metrics") or {}
        blocks.append(f"On held-out leads the expected calibration error is "
                      f"{_num(metrics.get('ece'), 4)}: predicted probabilities are off by that much on "
                      f"average, weighted by leads.")
        points = tuple((float(b["predicted"]), float(b["observed"]), int(b["count"])) for b in bins)
        blocks.append(Chart(points,
                            "Reliability: mean predicted probability vs observed conversion, per tenth of "
                            "held-out leads (on the diagonal = calibrated)."))
        blocks.append(Table(("bin", "leads", "mean predicted", "observed"),
                            tuple((str(i + 1), _count(b["count"]), _pct(b["predicted"]), _pct(b["observed"]))
                                  for i, b in enumerate(bins))))
    return Section("Calibration", blocks)


def _threshold_and_tiers(meta: Mapping[str, Any]) -> Section:
    threshold = meta.get("threshold") or {}
    blocks: list[Block] = [f"Business threshold {_num(threshold.get('value'), 4)} "
                           f"(objective: {threshold.get('objective', 'n/a')}): {threshold.get('detail', '')}"]
    measured = (meta.get("holdout") or {}).get("threshold")
    if measured:
        blocks.append(f"On held-out leads it flags {_pct(measured.get('share_flagged'))} of leads, with "
                      f"precision {_pct(measured.get('precision'))} and catching "
                      f"{_pct(measured.get('recall'))} of converters.")
    plan = meta.get("tier_plan") or []
    if plan:
        blocks.append("Planned on the out-of-fold predictions of training: " + "; ".join(
            f"{p['name']} {_pct(p['share'])} of leads, expected conversion {_pct(p['expected_conversion'])}"
            for p in plan) + ".")
    tiers = (meta.get("holdout") or {}).get("tiers")
    if tiers:
        headers = ("tier", "from probability", "held-out leads", "conversion", "share of converters")
        blocks.append(Table(headers,
                            tuple((str(t["name"]), _pct(t["min_probability"], 0), _pct(t["share"]),
                                   _pct(t["conversion_rate"]), _pct(t["converters_share"])) for t in tiers)))
    elif meta.get("tiers"):
        blocks.append(Table(("tier", "from probability", "action"),
                            tuple((str(t["name"]), _pct(t["min_probability"], 0), str(t["action"]))
                                  for t in meta["tiers"])))
    return Section("Threshold and tiers", blocks)


def _segments(meta: Mapping[str, Any]) -> Section:
    tables = (meta.get("holdout") or {}).get("segments") or {}
    if not tables:
        return Section("Quality per segment", ["No per-segment evaluation was recorded for this version."])
    blocks: list[Block] = ["Segments with fewer than 30 held-out leads are pooled as (other); ROC-AUC is "
                           "n/a where a segment has one outcome only."]
    for column, rows in tables.items():
        blocks.append(f"By `{column}`:")
        headers = (column, "leads", "conversion", "mean predicted", "ROC-AUC", "top-10% conversion")
        blocks.append(Table(headers, tuple(
            (str(r["segment"]), _count(r["leads"]), _pct(r["conversion_rate"]), _pct(r["mean_probability"]),
             _num(r["roc_auc"]), _pct(r["top_decile_rate"])) for r in rows)))
    return Section("Quality per segment", blocks)


def limitations(meta: Mapping[str, Any]) -> list[str]:
    """Known limitations that follow from the recorded facts, most specific first."""
    out: list[str] = []
    holdout = meta.get("holdout") or {}
    metrics = holdout.get("metrics") or {}
    overall = metrics.get("roc_auc")
    for column, rows in (holdout.get("segments") or {}).items():
        for r in rows:
            auc = r.get("roc_auc")
            if (overall is not None and auc is not None and auc < overall - WEAK_SEGMENT_GAP
                    and r["leads"] >= WEAK_SEGMENT_LEADS):
                out.append(f"Ranks `{column}` = {r['segment']} less well (ROC-AUC {_num(auc)} vs "
                           f"{_num(overall)} overall, {_count(r['leads'])} held-out leads).")
            predicted, observed = r.get("mean_probability"), r.get("conversion_rate")
            if (predicted is not None and observed is not None and r["leads"] >= WEAK_SEGMENT_LEADS
                    and abs(predicted - observed) > max(MISCALIBRATED_GAP, MISCALIBRATED_RATIO * observed)):
                word = "Over-predicts" if predicted > observed else "Under-predicts"
                out.append(f"{word} `{column}` = {r['segment']}: {_pct(predicted)} predicted on average, "
                           f"{_pct(observed)} observed ({_count(r['leads'])} held-out leads); scores of "
                           f"these leads are not calibrated.")
            if r.get("roc_auc") is None:
                out.append(f"Quality for `{column}` = {r['segment']} is unmeasured (one outcome only "
                           f"among {_count(r['leads'])} held-out leads).")
    trained, held = meta.get("positive_rate"), metrics.get("positive_rate")
    if trained and held and abs(held - trained) / trained > BASE_RATE_SHIFT:
        out.append(f"The conversion rate moved from {_pct(trained)} in training to {_pct(held)} on "
                   f"held-out leads: probabilities may need recalibration; watch the monitoring report.")
    if not meta.get("training_window"):
        out.append("Validated on a random sample, not on later leads: expect lower quality on future leads.")
    if "holdout" in meta and meta.get("refit_on_all_rows"):
        out.append("The evaluation figures were measured before the final refit on all rows; the "
                   "registered model has not been scored on unseen leads yet.")
    if meta.get("leakage_allowed"):
        out.append(f"Columns allowed despite a leakage finding ({', '.join(meta['leakage_allowed'])}) must "
                   f"be known when a lead is scored, or the figures above are too good.")
    window = meta.get("training_window") or []
    out.append((f"Learned from leads created {_day(window[0])} to {_day(window[-1])}" if window else
                "Learned from a table without creation dates")
               + ": new sources, products, prices or sales processes change what converts; monitor "
                 "drift and retrain.")
    out.append("Trained on past sales behaviour: leads that were never followed up could not convert, so "
               "the model can repeat past prioritisation (a feedback loop); A/B tests against the rules "
               "baseline measure its real effect.")
    return out


def build_card(meta: Mapping[str, Any], version: str | None = None) -> ModelCard:
    """The model card of a bundle or registered version, from its metadata."""
    version = str(version or meta.get("version") or "unregistered")
    holdout = meta.get("holdout") or {}
    metrics = holdout.get("metrics") or meta.get("test_metrics") or {}
    ranking = (f" It ranks held-out leads with ROC-AUC {_num(metrics.get('roc_auc'))}; its top 10% convert "
               f"at {_pct(metrics.get('top_decile_rate'))} against {_pct(metrics.get('positive_rate'))} on "
               f"average.") if metrics.get("roc_auc") is not None else ""
    what = model_description(meta)
    summary = (f"{what[0].upper()}{what[1:]}, predicting `{meta.get('target', 'converted')}` from "
               f"{len(meta.get('features') or [])} columns, trained on {_count(meta.get('rows'))} leads."
               f"{ranking}")
    sections = [_details(meta, version), _intended_use(meta), _training_data(meta), _features(meta),
                _evaluation(meta), _calibration(meta), _threshold_and_tiers(meta), _segments(meta),
                Section("Known limitations", [limitations(meta)])]
    return ModelCard(f"Model card: lead conversion model {version}", summary, sections)

