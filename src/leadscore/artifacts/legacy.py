"""Bundles saved before the package moved into subpackages still load.

A pickle names each class by module path (``leadscore.models.CategoricalLGBMClassifier``). When a
module moves, :func:`install` puts a small stand-in module under the old name into ``sys.modules``; it
resolves each attribute from the module that holds it now, imported only when a pickle asks for it, so
loading a logistic-only bundle still does not import CatBoost.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types
from typing import Any

# old module -> (where its names live now, {name: module} for names that moved elsewhere)
MOVED: dict[str, tuple[str, dict[str, str]]] = {
    "leadscore.calibration": ("leadscore.modeling.calibration", {}),
    "leadscore.ensemble": ("leadscore.modeling.ensemble", {}),
    "leadscore.features": ("leadscore.modeling.preprocessing", {}),
    "leadscore.rules": ("leadscore.modeling.rules", {}),
    "leadscore.schema": ("leadscore.data.schema", {}),
    "leadscore.segments": ("leadscore.modeling.segments", {}),
    "leadscore.models": ("leadscore.modeling.candidates", {
        "CategoricalLGBMClassifier": "leadscore.modeling.lightgbm_model",
        "SafeNameXGBClassifier": "leadscore.modeling.xgboost_model",
        "CategoricalCatBoostClassifier": "leadscore.modeling.catboost_model",
        "_category_text": "leadscore.modeling.catboost_model",
    }),
}
_LOCK = threading.Lock()


class _Moved(types.ModuleType):
    """Stands in for a module that moved; attributes come from the modules that hold them now."""

    def __init__(self, name: str, home: str, names: dict[str, str]) -> None:
        super().__init__(name, f"moved: names now live in {home}")
        self._home, self._names = home, names

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(importlib.import_module(self._names.get(attr, self._home)), attr)


def install() -> None:
    """Register a stand-in for every moved module whose old name is not a real module (idempotent)."""
    with _LOCK:
        for old, (home, names) in MOVED.items():
            if old not in sys.modules:
                sys.modules[old] = _Moved(old, home, names)
