"""Monitoring: Prometheus metrics, structured request logs, the prediction log and data drift."""
