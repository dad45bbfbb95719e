"""A/B experiments: deterministic assignment, sequential analysis and recommendations (to be built)."""
