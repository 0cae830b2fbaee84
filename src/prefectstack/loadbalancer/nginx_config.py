"""The load balancer's nginx.conf for either deployment mode, from one template."""

from __future__ import annotations

from pathlib import Path

from ..prefect_env import shared_env
from ..render import render

TEMPLATE = "nginx/nginx.conf.j2"
COMPOSE_CONF = Path("nginx") / "compose.conf"  # under deploy/, mounted by compose
COMPOSE_TLS_CONF = Path("nginx") / "compose-tls.conf"  # with docker-compose.tls.yml
# Where docker-compose.tls.yml mounts the certificate and its key.
COMPOSE_TLS = {"cert": "/etc/nginx/tls/server.pem", "key": "/etc/nginx/tls/server.key"}
COMPOSE_API_SERVICE = "prefect-api"
COMPOSE_API_PORT = 4200
COMPOSE_LISTEN_PORT = 4200
COMPOSE_STATUS_PORT = 8080
COMPOSE_LOG_EXPORTER = "nginx-log-exporter"
COMPOSE_LOG_EXPORTER_PORT = 3903  # mtail: HTTP /metrics on TCP, syslog in on UDP
# Docker's embedded DNS; short validity so scaled replicas join within seconds.
DOCKER_RESOLVER = "127.0.0.11 valid=5s ipv6=off"


def _keepalive() -> dict[str, int]:
    prefect = int(shared_env()["PREFECT_SERVER_API_KEEPALIVE_TIMEOUT"])
    return {"prefect_keepalive": prefect, "upstream_keepalive": max(1, prefect - 15)}


def native_conf(
    *,
    listen: str,
    api_addresses: list[str],
    status_listen: str,
    run_dir: Path,
    nginx_dir: Path,
    log_exporter: str,
    tls: dict[str, str] | None = None,
) -> str:
    temp = nginx_dir / "tmp"
    return render(
        TEMPLATE,
        mode="native",
        listen=listen,
        tls=tls,
        upstream_servers=api_addresses,
        resolver=None,
        status_listen=status_listen,
        pid_file=run_dir / "nginx.pid",
        error_log="stderr",
        log_exporter=log_exporter,
        temp_paths=[
            f"{directive} {temp / name}"
            for directive, name in (
                ("client_body_temp_path", "body"),
                ("proxy_temp_path", "proxy"),
                ("fastcgi_temp_path", "fastcgi"),
                ("uwsgi_temp_path", "uwsgi"),
                ("scgi_temp_path", "scgi"),
            )
        ],
        **_keepalive(),
    )


def compose_conf(*, tls: bool = False) -> str:
    return render(
        TEMPLATE,
        mode="compose",
        listen=str(COMPOSE_LISTEN_PORT),
        tls=COMPOSE_TLS if tls else None,
        upstream_servers=[f"{COMPOSE_API_SERVICE}:{COMPOSE_API_PORT} resolve"],
        resolver=DOCKER_RESOLVER,
        status_listen=str(COMPOSE_STATUS_PORT),
        pid_file="/var/run/nginx.pid",
        error_log="/dev/stderr",
        log_exporter=f"{COMPOSE_LOG_EXPORTER}:{COMPOSE_LOG_EXPORTER_PORT}",
        temp_paths=[],
        **_keepalive(),
    )
