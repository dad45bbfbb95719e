"""A/B experiments: the store of experiments and exposures, deterministic assignment, both arms' scores,
results on matured leads, sequential analysis, recommendations and the report's charts; plus the
simulated experiments of the demo.

The statistics: ``proportions`` (arm rates, lift, sample size and power), ``srm`` (sample ratio mismatch),
``sequential`` (always-valid mSPRT p-values and confidence sequences), ``cuped`` (covariate-adjusted
lift), ``decision`` (the recommendation) and ``analysis`` (all of it on one table of leads).
"""
