"""Measuring models: the metric registry, thresholds and tiers, curves, importance, report tables and
plots.
"""
