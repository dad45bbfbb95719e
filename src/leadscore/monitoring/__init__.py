"""What happens after scoring: the prediction log and outcomes (realized and estimated performance, drift and
alerts come next).
"""
