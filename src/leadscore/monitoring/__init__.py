"""What happens after scoring: the prediction log (its rows, its local journal) and the outcomes; labels
with their maturity, realized and estimated performance, drift, the checks and their alert states
(exported to the store, Prometheus and webhooks), the monitoring report's charts, and the replay of
history as production.
"""
