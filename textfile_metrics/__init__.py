"""Prometheus textfile metrics the pipelines write for node_exporter's textfile collector:
one atomic writer, the notification counters and the online-experiment gauges."""
