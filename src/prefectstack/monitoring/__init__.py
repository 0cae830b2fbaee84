"""What the stack shows of its own health: prefectstack's Prometheus exporter,
the Prometheus/Alertmanager configuration and the Grafana dashboards."""
