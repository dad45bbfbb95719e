"""Model building blocks: candidate estimators, preprocessing, the rules baseline, the calibrated ensemble,
segment routing, calibration, feature importance.
"""
