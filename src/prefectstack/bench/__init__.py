"""Benchmarks that print figures (speed targets live here, not in tests).

`prefectstack bench` loads a running stack (either mode) and reports what a user
feels: API throughput through the load balancer against one replica, flow-run
lifecycle throughput, how soon task runs and events are readable, and how far the
event pipeline lags; optionally the same workload against a stock single Prefect
server on SQLite. `prefectstack bench exporter` times the Prefect exporter.
"""
