"""Strict JSON from Python and NumPy values: NaN and infinities become null."""

from __future__ import annotations

import json
import math
import sys
from typing import Any


def json_safe(value: Any) -> Any:
    """``value`` with NumPy scalars and arrays made plain, and non-finite floats made None.

    Examples
    --------
    >>> import numpy as np
    >>> json_safe({"a": float("nan"), "b": np.int64(3), "c": (1.5, np.inf)})
    {'a': None, 'b': 3, 'c': [1.5, None]}
    """
    np = sys.modules.get("numpy")  # NumPy values exist only once NumPy is imported; do not import it here
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set) or (np is not None and isinstance(value, np.ndarray)):
        return [json_safe(v) for v in value]
    if np is not None and isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any, *, indent: int | None = None) -> str:
    """Strict JSON text of ``value`` (sorted keys; unknown types as their ``str``)."""
    return json.dumps(json_safe(value), indent=indent, sort_keys=True, default=str, allow_nan=False)

