"""From a labelled table to a trained model: leakage guard, tuning, out-of-fold selection, segments,
clusters, the one build function.
"""
