"""Prometheus and Alertmanager configurations for both deployment modes, each
from one template (deploy/prometheus/prometheus.yml.j2,
deploy/alertmanager/alertmanager.yml.j2)."""

from __future__ import annotations

from pathlib import Path

from ..render import render
from ..settings import StackSettings

PROMETHEUS_TEMPLATE = "prometheus/prometheus.yml.j2"
ALERTMANAGER_TEMPLATE = "alertmanager/alertmanager.yml.j2"
COMPOSE_PROMETHEUS = Path("prometheus") / "compose.yml"
COMPOSE_ALERTMANAGER_WEBHOOK = Path("alertmanager") / "compose" / "webhook.yml"
COMPOSE_ALERTMANAGER_SILENT = Path("alertmanager") / "compose" / "silent.yml"
# The API's basic-auth user and password, written by the container's entrypoint
# from PREFECT_SERVER_API_AUTH_STRING (Prometheus reads no environment).
COMPOSE_USERNAME_FILE = "/tmp/prefect-api-user"
COMPOSE_PASSWORD_FILE = "/tmp/prefect-api-password"
COMPOSE_WEBHOOK_URL_FILE = "/tmp/webhook-url"
# Compose service name -> its metrics port, inside the backend network.
COMPOSE_TARGETS = {
    "prefect_exporter": "prefect-exporter:9560",
    "postgres_exporter": "postgres-exporter:9187",
    "redis_exporter": "redis-exporter:9121",
    "nginx_exporter": "nginx-exporter:9113",
    "nginx_log_exporter": "nginx-log-exporter:3903",
    "alertmanager": "alertmanager:9093",
    "prometheus": "localhost:9090",
}


def native_prometheus(s: StackSettings, *, rules_dir: Path, password_file: Path) -> str:
    loopback = "127.0.0.1"
    return render(
        PROMETHEUS_TEMPLATE,
        mode="native",
        rules_dir=rules_dir,
        username=s.auth_string.partition(":")[0],
        username_file=None,
        password_file=password_file,
        api_dns=None,
        api_replicas=[
            {"name": f"api-{i}", "address": f"{loopback}:{port}"}
            for i, port in enumerate(s.api_ports, start=1)
        ],
        targets={
            "prefect_exporter": f"{loopback}:{s.prefect_exporter_port}",
            "postgres_exporter": f"{loopback}:{s.postgres_exporter_port}",
            "redis_exporter": f"{loopback}:{s.redis_exporter_port}",
            "nginx_exporter": f"{loopback}:{s.nginx_exporter_port}",
            "nginx_log_exporter": f"{loopback}:{s.nginx_log_exporter_port}",
            "alertmanager": f"{loopback}:{s.alertmanager_port}",
            "prometheus": f"{loopback}:{s.prometheus_port}",
        },
    )


def compose_prometheus() -> str:
    return render(
        PROMETHEUS_TEMPLATE,
        mode="compose",
        rules_dir="/etc/prometheus/rules",
        username=None,
        username_file=COMPOSE_USERNAME_FILE,
        password_file=COMPOSE_PASSWORD_FILE,
        api_dns="prefect-api",
        api_dns_port=4200,
        api_replicas=[],
        targets=COMPOSE_TARGETS,
    )


def native_alertmanager(s: StackSettings) -> str:
    webhook = f'url: "{s.alert_webhook_url}"' if s.alert_webhook_url else None
    return render(ALERTMANAGER_TEMPLATE, mode="native", webhook=webhook)


def compose_alertmanager_webhook() -> str:
    return render(
        ALERTMANAGER_TEMPLATE, mode="compose", webhook=f"url_file: {COMPOSE_WEBHOOK_URL_FILE}"
    )


def compose_alertmanager_silent() -> str:
    return render(ALERTMANAGER_TEMPLATE, mode="compose", webhook=None)
