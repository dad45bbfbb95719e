"""Measuring models: the metric registry, thresholds and tiers, curves, model comparison, per-segment
breakdowns, held-out results, EDA and report tables, plots.
"""
