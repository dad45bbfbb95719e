"""Assignment: a hash of salt and lead id, the same in every process, uniform, and compared with the split."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from leadscore.core.exceptions import ConfigError, DataValidationError
from leadscore.experiments.assignment import arm_of, assign_arms, bucket, buckets

IDS = [f"L{i:07d}" for i in range(20_000)]


def test_bucket_is_the_documented_hash() -> None:
    digest = hashlib.sha256(b"exp-salt:L0000042").digest()
    assert bucket("exp-salt", "L0000042") == int.from_bytes(digest[:8], "big") / 2**64


def test_same_arm_in_another_process_with_another_hash_seed() -> None:
    code = ("from leadscore.experiments.assignment import assign_arms; "
            "print(''.join(a[0] for a in assign_arms('s1', [f'L{i:07d}' for i in range(500)], 0.3)))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    here = "".join(a[0] for a in assign_arms("s1", IDS[:500], 0.3))
    assert out.stdout.strip() == here
    assert set(here) == {"c", "t"}


def test_buckets_are_uniform_and_arms_follow_the_split() -> None:
    values = buckets("uniform-check", IDS)
    assert stats.kstest(values, "uniform").pvalue > 1e-3
    treated = int((assign_arms("uniform-check", IDS, 0.3) == "treatment").sum())
    # two-sided binomial test of the treatment share against the split
    assert stats.binomtest(treated, len(IDS), 0.3).pvalue > 1e-3
    assert abs(treated / len(IDS) - 0.3) < 0.015


def test_salts_assign_independently() -> None:
    a = assign_arms("first", IDS, 0.5) == "treatment"
    b = assign_arms("second", IDS, 0.5) == "treatment"
    table = np.array([[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]])
    assert stats.chi2_contingency(table).pvalue > 1e-3


@given(st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=20),
       st.floats(min_value=0.01, max_value=0.99))
def test_arm_is_a_threshold_on_the_bucket(lead: str, salt: str, split: float) -> None:
    arm = arm_of(salt, lead, split)
    assert arm == ("treatment" if bucket(salt, lead) < split else "control")
    assert arm_of(salt, lead, split) == arm


@pytest.mark.parametrize("split", [0, 1, -0.1, 1.5, "half"])
def test_bad_split_is_a_config_error(split: object) -> None:
    with pytest.raises(ConfigError, match="split: expected"):
        arm_of("s", "L1", split)  # type: ignore[arg-type]


def test_empty_lead_id_is_refused() -> None:
    with pytest.raises(DataValidationError, match="lead_id"):
        bucket("s", "")
