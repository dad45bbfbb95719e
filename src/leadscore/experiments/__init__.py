"""A/B experiments: deterministic assignment, sequential analysis and recommendations.

The statistics: ``proportions`` (arm rates, lift, sample size and power), ``srm`` (sample ratio mismatch),
``sequential`` (always-valid mSPRT p-values and confidence sequences), ``cuped`` (covariate-adjusted
lift), ``decision`` (the recommendation) and ``analysis`` (all of it on one table of leads).
"""
