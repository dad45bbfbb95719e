"""The learning loop: shadow scoring of challengers in batch runs, the champion/challenger gate and the
promotion that applies it to the registry, triggered retraining with its recorded cycles, rescoring of
changed CRM leads (sync), and the loop replayed on a drifting generated world.
"""
