"""The learning loop: shadow challengers, the promotion gate, triggered retraining and its history (to be
built).
"""
