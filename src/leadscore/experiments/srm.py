"""Sample ratio mismatch: do the arm sizes match the planned split?

A mismatch means assignment or logging is broken (leads lost in one arm, a bot, a redirect), and the
lift measured on such an experiment cannot be trusted, however significant it looks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from scipy.stats import chisquare

from leadscore.core.exceptions import ConfigError, DataValidationError
from leadscore.core.jsonsafe import json_safe


@dataclass(frozen=True)
class SampleRatio:
    """Chi-square goodness-of-fit of the arm sizes against the planned treatment share."""

    n_control: int
    n_treatment: int
    expected_treatment_share: float
    observed_treatment_share: float
    chi2: float
    p_value: float
    mismatch: bool
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-safe values (NaN as None)."""
        return json_safe(asdict(self))


def sample_ratio_check(n_control: int, n_treatment: int, split: float,
                       threshold: float = 0.001) -> SampleRatio:
    """Compare the arm sizes with ``split`` (the planned treatment share) by a chi-square test.

    ``mismatch`` is ``p_value < threshold``; the default 0.001 is strict on purpose, since the check runs
    on every look and a false alarm stops the reading of a healthy experiment. Without any lead the
    p-value is 1 and there is no mismatch.

    Examples
    --------
    >>> sample_ratio_check(5000, 5400, split=0.5).mismatch
    True
    """
    if not 0 < split < 1:
        raise ConfigError(f"split: expected a treatment share in (0, 1), got {split!r}")
    if not 0 < threshold < 1:
        raise ConfigError(f"threshold: expected a p-value in (0, 1), got {threshold!r}")
    if n_control < 0 or n_treatment < 0:
        raise DataValidationError(
            f"arm sizes: expected counts >= 0, got n_control={n_control}, n_treatment={n_treatment}")
    total = n_control + n_treatment
    if total == 0:
        return SampleRatio(0, 0, float(split), float("nan"), 0.0, 1.0, False, float(threshold))
    result = chisquare([n_control, n_treatment], f_exp=[total * (1 - split), total * split])
    p_value = float(result.pvalue)
    return SampleRatio(int(n_control), int(n_treatment), float(split), n_treatment / total,
                       float(result.statistic), p_value, p_value < threshold, float(threshold))
