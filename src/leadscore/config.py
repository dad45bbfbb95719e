"""params.yaml -> typed, frozen settings. The only module that reads params.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from leadscore.exceptions import ConfigError

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
class TrainParams:
    model: str = "lightgbm"
    model_params: dict[str, dict[str, Any]] = field(default_factory=dict)

    def params_for(self, name: str) -> dict[str, Any]:
        """Hyper-parameters declared for candidate ``name`` (empty when none)."""
        return dict(self.model_params.get(name, {}))


@dataclass(frozen=True)
class Params:
    seed: int = 42
    demo: DemoParams = DemoParams()
    snapshot: SnapshotParams = SnapshotParams()
    features: FeatureParams = FeatureParams()
    test_months: int = 3
    candidates: tuple[str, ...] = ("logistic", "lightgbm")
    cv_folds: int = 4
    train: TrainParams = TrainParams()
    calibration_bins: int = 10


def _section(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"params.yaml: section '{name}' must be a mapping, got {type(value).__name__}")
    return value


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read ``params.yaml`` into :class:`Params`; missing keys take the defaults."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"params file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"params file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"params file {path} must hold a mapping at the top level")
    train = _section(raw, "train")
    features = _section(raw, "features")
    try:
        return Params(
            seed=int(_section(raw, "base").get("seed", 42)),
            demo=DemoParams(**_section(raw, "demo")),
            snapshot=SnapshotParams(**_section(raw, "snapshot")),
            features=FeatureParams(
                exclude=tuple(features.get("exclude", FeatureParams.exclude)),
                placeholders=tuple(str(p) for p in features.get("placeholders", DEFAULT_PLACEHOLDERS)),
            ),
            test_months=int(_section(raw, "split").get("test_months", 3)),
            candidates=tuple(_section(raw, "model_comparison").get("candidates", ("logistic", "lightgbm"))),
            cv_folds=int(_section(raw, "model_comparison").get("cv_folds", 4)),
            train=TrainParams(
                model=str(train.get("model", "lightgbm")),
                model_params={k: dict(v) for k, v in train.items() if isinstance(v, dict)},
            ),
            calibration_bins=int(_section(raw, "evaluate").get("calibration_bins", 10)),
        )
    except TypeError as exc:
        raise ConfigError(f"params file {path}: {exc}") from exc
