"""Deterministic, sticky arm assignment: the same experiment and lead always give the same arm.

A lead's bucket is the first 8 bytes of ``sha256("<salt>:<lead_id>")`` read as an unsigned integer and
divided by 2**64: uniform in [0, 1), identical in every process, on every machine and in every
Python version (unlike :func:`hash`, which is salted per process). The lead joins the treatment arm
when its bucket is below the experiment's ``split`` (the treatment's share of traffic), else the
control arm. A new salt per experiment keeps assignments of different experiments independent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from leadscore.core.exceptions import ConfigError, DataValidationError

CONTROL, TREATMENT = "control", "treatment"
ARMS = (CONTROL, TREATMENT)
_SCALE = float(2**64)


def check_split(split: float) -> float:
    """``split`` (the treatment's share of leads) if it is strictly between 0 and 1."""
    if not (isinstance(split, int | float) and 0 < float(split) < 1):
        raise ConfigError(f"split: expected the treatment's share of leads, between 0 and 1, got {split!r}")
    return float(split)


def bucket(salt: str, lead_id: str) -> float:
    """The lead's position in [0, 1) for the experiment salted with ``salt``.

    Examples
    --------
    >>> bucket("exp-1", "L0000001") == bucket("exp-1", "L0000001")
    True
    >>> 0 <= bucket("exp-1", "L0000001") < 1
    True
    """
    if lead_id is None or str(lead_id) == "":
        raise DataValidationError("lead_id: expected a non-empty id to assign an arm, got an empty value")
    digest = hashlib.sha256(f"{salt}:{lead_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def buckets(salt: str, lead_ids: Iterable[str]) -> np.ndarray:
    """:func:`bucket` of every lead id, as a float array."""
    return np.fromiter((bucket(salt, str(i)) for i in lead_ids), dtype=float)


def arm_of(salt: str, lead_id: str, split: float) -> str:
    """``"treatment"`` when the lead's bucket is below ``split``, else ``"control"``."""
    return TREATMENT if bucket(salt, lead_id) < check_split(split) else CONTROL


def assign_arms(salt: str, lead_ids: Iterable[str], split: float) -> np.ndarray:
    """The arm of every lead id (an object array of ``"control"``/``"treatment"``)."""
    treated = buckets(salt, lead_ids) < check_split(split)
    return np.where(treated, TREATMENT, CONTROL).astype(object)
