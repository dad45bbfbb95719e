"""params.yaml -> typed, frozen settings. The only module that reads params.yaml."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from leadscore.core.exceptions import ConfigError

DEFAULT_PLACEHOLDERS: tuple[str, ...] = (
    "", "select", "unknown", "n/a", "na", "none", "null", "nan", "-", "--", "?", "not provided",
)


@dataclass(frozen=True)
class DemoParams:
    n_leads: int = 50_000
    seed: int = 42
    start: str = "2024-01-01"
    months: int = 20


@dataclass(frozen=True)
class SnapshotParams:
    snapshot_days: int = 7
    label_window_days: int = 90


@dataclass(frozen=True)
class FeatureParams:
    exclude: tuple[str, ...] = ("sales_status",)
    placeholders: tuple[str, ...] = DEFAULT_PLACEHOLDERS


@dataclass(frozen=True)
class ComparisonParams:
    # random forest is left out by default: slower, and rarely better than the boosted trees
    candidates: tuple[str, ...] = ("logistic", "lightgbm", "xgboost", "catboost")
    cv_folds: int = 4
    metric: str = "roc_auc"
    n_trials: int = 0
    time_budget_seconds: float = 0.0
    study_storage: str | None = None
    ensemble: bool = True
    max_members: int = 3
    calibration: tuple[str, ...] = ("none", "platt", "isotonic")
    smote: bool = False


@dataclass(frozen=True)
class SegmentParams:
    column: str | None = None
    min_positives: int = 150


@dataclass(frozen=True)
class LeakageParams:
    single_feature_auc: float = 0.90
    dominance_margin: float = 0.02
    missingness_auc: float = 0.90
    allow: tuple[str, ...] = ()


@dataclass(frozen=True)
class DecisionParams:
    objective: str = "capacity"
    capacity_share: float | None = 0.10
    capacity_per_day: float | None = None
    target_precision: float | None = 0.5
    tiers: tuple[dict[str, Any], ...] = ()
    tiers_by: str = "probability"  # capacity: each tier's share of leads -> cut-offs on out-of-fold scores


@dataclass(frozen=True)
class MonitoringParams:
    psi_warn: float = 0.10       # population stability index of a feature or the score: warn from here
    psi_alert: float = 0.25      # ... alert from here
    min_rows: int = 200          # fewer scored leads in a period: the drift check says "too few"
    min_labelled: int = 100      # fewer matured labels in a period: no realized ROC-AUC
    auc_drop_warn: float = 0.05  # ROC-AUC below the model's held-out value by this share: warn
    auc_drop_alert: float = 0.10  # ... alert (realized; estimated: when its whole interval is below)
    ignore: tuple[str, ...] = ()  # features not checked for drift (calendar features differ by design)


@dataclass(frozen=True)
class PromotionParams:
    min_labeled: int = 300        # fewer matured labelled leads scored by both: keep, no decision
    alpha: float = 0.05           # DeLong's test: promote when better at this level, reject when worse
    brier_tolerance: float = 0.005  # reject a challenger whose Brier score is worse by more than this
    ece_tolerance: float = 0.02   # ... or whose calibration error (ECE) is worse by more than this


@dataclass(frozen=True)
class RetrainParams:
    min_new_labels: int = 100     # retrain once this many leads matured (labelled) after the model's data
    max_age_days: float = 30.0    # ... or once the active model is this old
    on_alert: bool = True         # ... or when `leadscore monitor check` saved an alert for it
    holdout_months: int = 1       # the newest labelled months the challenger does not train on: the gate's


@dataclass(frozen=True)
class ExperimentParams:
    split: float = 0.5            # the treatment's share of leads in a new experiment
    alpha: float = 0.05           # significance of the lift tests (fixed-horizon and sequential)
    power: float = 0.8            # wanted power at the minimum detectable effect: the planned sample size
    mde: float = 0.02             # minimum detectable effect: an absolute lift in conversion
    min_days: float = 14.0        # no "deploy" before an experiment has run this long
    srm_threshold: float = 0.001  # sample-ratio mismatch when the chi-square p-value is below this
    window_days: float | None = None  # conversion counted this long after assignment (default: label window)


@dataclass(frozen=True)
class Params:
    seed: int = 42
    demo: DemoParams = DemoParams()
    snapshot: SnapshotParams = SnapshotParams()
    features: FeatureParams = FeatureParams()
    test_months: int = 3
    comparison: ComparisonParams = ComparisonParams()
    model_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    fixed_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    segments: SegmentParams = SegmentParams()
    clusters_k: int = 5
    leakage: LeakageParams = LeakageParams()
    decision: DecisionParams = DecisionParams()
    rules: tuple[dict[str, Any], ...] = ()
    calibration_bins: int = 10
    monitoring: MonitoringParams = MonitoringParams()
    promotion: PromotionParams = PromotionParams()
    retrain: RetrainParams = RetrainParams()
    experiments: ExperimentParams = ExperimentParams()

    @property
    def candidates(self) -> tuple[str, ...]:
        return self.comparison.candidates


def config_items(items: Any, section: str, *, required: Sequence[str],
                 optional: Sequence[str] = ()) -> list[Mapping[str, Any]]:
    """Validate a list of mappings from params.yaml (rules, tiers): each with the required keys and
    no unknown ones. Raises ConfigError naming the position, e.g. ``tiers[2]: expected keys ...``."""
    if isinstance(items, str | bytes | Mapping) or not isinstance(items, Sequence):
        raise ConfigError(f"{section}: expected a list of mappings, got {type(items).__name__}")
    keys = ", ".join(required) + "".join(f"[, {k}]" for k in optional)
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ConfigError(f"{section}[{i}]: expected a mapping, got {type(item).__name__}")
        unknown = sorted(map(str, set(item) - set(required) - set(optional)))
        missing = [k for k in required if k not in item]
        if unknown or missing:
            found = "unknown " + ", ".join(unknown) if unknown else "no " + ", ".join(missing)
            raise ConfigError(f"{section}[{i}]: expected keys {keys}, got {found}")
    return list(items)


def _section(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"params.yaml: section '{name}' must be a mapping, got {type(value).__name__}")
    return value


def _tuples(values: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: tuple(v) if k in keys and isinstance(v, list) else v for k, v in values.items()}


def parse_params(raw: dict[str, Any]) -> Params:
    """Build :class:`Params` from the parsed YAML mapping; missing keys take the defaults."""
    features = _section(raw, "features")
    comparison = _tuples(_section(raw, "model_comparison"), "candidates", "calibration")
    if "time_budget_seconds" in comparison:
        comparison["time_budget_seconds"] = float(comparison["time_budget_seconds"] or 0)
    rules = raw.get("rules") or []
    if not isinstance(rules, list):
        raise ConfigError("params.yaml: 'rules' must be a list of {feature, op, value, points, label}")
    return Params(
        seed=int(_section(raw, "base").get("seed", 42)),
        demo=DemoParams(**_section(raw, "demo")),
        snapshot=SnapshotParams(**_section(raw, "snapshot")),
        features=FeatureParams(
            exclude=tuple(features.get("exclude", FeatureParams.exclude)),
            placeholders=tuple(str(p) for p in features.get("placeholders", DEFAULT_PLACEHOLDERS)),
        ),
        test_months=int(_section(raw, "split").get("test_months", 3)),
        comparison=ComparisonParams(**comparison),
        model_params={k: dict(v) for k, v in
                      (_section(raw, "train").get("model_params") or {}).items()},
        fixed_params={k: dict(v) for k, v in
                      (_section(raw, "train").get("fixed_params") or {}).items()},
        segments=SegmentParams(**_section(raw, "segments")),
        clusters_k=int(_section(raw, "clusters").get("k", 5)),
        leakage=LeakageParams(**_tuples(_section(raw, "leakage"), "allow")),
        decision=DecisionParams(**_tuples(_section(raw, "decision"), "tiers")),
        rules=tuple(rules),
        calibration_bins=int(_section(raw, "evaluate").get("calibration_bins", 10)),
        monitoring=MonitoringParams(**_tuples(_section(raw, "monitoring"), "ignore")),
        promotion=PromotionParams(**_section(raw, "promotion")),
        retrain=RetrainParams(**_section(raw, "retrain")),
        experiments=ExperimentParams(**_section(raw, "experiments")),
    )


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read ``params.yaml`` into :class:`Params`."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"params file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"params file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"params file {path} must hold a mapping at the top level")
    try:
        return parse_params(raw)
    except TypeError as exc:
        raise ConfigError(f"params file {path}: {exc}") from exc
