"""The native stack's monitoring: exporters, Prometheus, Alertmanager.

The same components and config files as the compose deployment: the
prometheus-community / upstream exporters from Debian's packages, mtail for
nginx's request log, prefectstack's own exporter, Prometheus with the shared
rules, Alertmanager. Grafana has no Debian package and is not part of native
mode: the compose deployment runs it.
"""

from __future__ import annotations

import sys

from .. import health
from ..settings import StackSettings
from . import archiving
from .layout import Layout
from .service import ADDONS_STAGE, Service, Skipped
from .tools import Tools

LOOPBACK = "127.0.0.1"


def _service(
    name: str,
    description: str,
    argv: list[str],
    env: dict[str, str],
    port: int,
    port_key: str,
    probe_url: str,
    udp: bool = False,
) -> Service:
    return Service(
        name=name,
        description=description,
        argv=argv,
        env=env,
        port=port,
        port_key=port_key,
        udp=udp,
        probe=lambda: health.http_ok(probe_url),
        stage=ADDONS_STAGE,
    )


def services(
    s: StackSettings, layout: Layout, tools: Tools, env0: dict[str, str], prefect_env: dict
) -> tuple[list[Service], list[Skipped]]:
    """Monitoring services to run, and those skipped with the reason."""
    deploy = tools.deploy / "prometheus"
    out: list[Service] = []
    skipped: list[Skipped] = []

    def add(binary: str | None, package: str, make) -> None:
        if binary is None:
            skipped.append(
                Skipped(package, f"{package} is not installed (apt-get install {package})")
            )
        else:
            out.append(make(binary))

    def url(port: int, path: str = "/metrics") -> str:
        return f"http://{LOOPBACK}:{port}{path}"

    add(
        tools.which("prometheus-postgres-exporter"),
        "prometheus-postgres-exporter",
        lambda b: _service(
            "postgres-exporter",
            "PostgreSQL exporter",
            [
                b,
                f"--web.listen-address={LOOPBACK}:{s.postgres_exporter_port}",
                f"--extend.query-path={deploy / 'postgres-exporter-queries.yaml'}",
            ],
            {
                **env0,
                "DATA_SOURCE_NAME": (
                    f"postgresql://{s.postgres_user}:{s.postgres_password.get_secret_value()}"
                    f"@{LOOPBACK}:{s.postgres_port}/{s.postgres_db}?sslmode=disable"
                    "&application_name=postgres-exporter"
                ),
            },
            s.postgres_exporter_port,
            "POSTGRES_EXPORTER_PORT",
            url(s.postgres_exporter_port, "/"),
        ),
    )
    add(
        tools.which("prometheus-redis-exporter"),
        "prometheus-redis-exporter",
        lambda b: _service(
            "redis-exporter",
            "Redis exporter",
            [b],
            {
                **env0,
                "REDIS_ADDR": f"redis://{LOOPBACK}:{s.prefect_redis_messaging_port}",
                "REDIS_PASSWORD": s.redis_password.get_secret_value(),
                "REDIS_EXPORTER_WEB_LISTEN_ADDRESS": f"{LOOPBACK}:{s.redis_exporter_port}",
                "REDIS_EXPORTER_CHECK_SINGLE_STREAMS": ",".join(
                    f"db{s.prefect_redis_messaging_db}={stream}" for stream in ("events", "actions")
                ),
            },
            s.redis_exporter_port,
            "REDIS_EXPORTER_PORT",
            url(s.redis_exporter_port),
        ),
    )
    add(
        tools.which("prometheus-nginx-exporter"),
        "prometheus-nginx-exporter",
        lambda b: _service(
            "nginx-exporter",
            "nginx stub_status exporter",
            [
                b,
                f"-nginx.scrape-uri=http://{LOOPBACK}:{s.nginx_status_port}/stub_status",
                f"-web.listen-address={LOOPBACK}:{s.nginx_exporter_port}",
            ],
            env0,
            s.nginx_exporter_port,
            "NGINX_EXPORTER_PORT",
            url(s.nginx_exporter_port),
        ),
    )
    add(
        tools.which("mtail"),
        "mtail",
        lambda b: _service(
            "nginx-log-exporter",
            "nginx request metrics (mtail)",
            [
                b,
                "--progs",
                str(deploy / "mtail"),
                "--logs",
                f"udp://{LOOPBACK}:{s.nginx_log_exporter_port}",
                "--address",
                LOOPBACK,
                "--port",
                str(s.nginx_log_exporter_port),
                "--emit_prog_label=false",
                "--logtostderr",
            ],
            env0,
            s.nginx_log_exporter_port,
            "NGINX_LOG_EXPORTER_PORT",
            url(s.nginx_log_exporter_port),
            udp=True,
        ),
    )
    out.append(
        _service(
            "prefect-exporter",
            "Prefect exporter (prefectstack)",
            [sys.executable, "-m", "prefectstack", "exporter"],
            {
                **env0,
                **prefect_env,
                # nginx's internal plain listener: the same upstream, no certificate.
                "PREFECT_API_URL": f"http://{LOOPBACK}:{s.nginx_status_port}/api",
                "PREFECT_API_AUTH_STRING": s.auth_string,
                "PREFECTSTACK_EXPORTER_ADDRESS": LOOPBACK,
                "PREFECTSTACK_EXPORTER_PORT": str(s.prefect_exporter_port),
                "PREFECTSTACK_BACKUP_DIR": str(s.backup_dir),
                "PREFECTSTACK_SERVICES_REPLICAS": str(s.prefect_services_replicas),
                "PREFECTSTACK_BACKGROUND_TASK_STUCK_SECONDS": str(s.background_task_stuck_seconds),
                # A directory is read from its files; an S3 store through pgBackRest.
                **(
                    {"PREFECTSTACK_PGBACKREST_CONFIG": str(archiving.config_path(layout))}
                    if s.pgbackrest_repo_type == "s3"
                    else {"PREFECTSTACK_PGBACKREST_REPO": str(s.pgbackrest_repo)}
                ),
                "PREFECTSTACK_PGBACKREST_STANZA": s.project_name,
                "PREFECTSTACK_DATA_DIR": str(layout.postgres),
            },
            s.prefect_exporter_port,
            "PREFECT_EXPORTER_PORT",
            url(s.prefect_exporter_port),
        )
    )
    add(
        tools.which("prometheus"),
        "prometheus",
        lambda b: _service(
            "prometheus",
            "Prometheus",
            [
                b,
                f"--config.file={layout.prometheus_conf}",
                f"--storage.tsdb.path={layout.root / 'prometheus'}",
                f"--storage.tsdb.retention.time={s.prometheus_retention}",
                f"--web.listen-address={s.bind_address}:{s.prometheus_port}",
                "--web.enable-lifecycle",
            ],
            env0,
            s.prometheus_port,
            "PROMETHEUS_PORT",
            url(s.prometheus_port, "/-/ready"),
        ),
    )
    add(
        tools.which("prometheus-alertmanager"),
        "prometheus-alertmanager",
        lambda b: _service(
            "alertmanager",
            "Alertmanager",
            [
                b,
                f"--config.file={layout.alertmanager_conf}",
                f"--storage.path={layout.root / 'alertmanager'}",
                f"--web.listen-address={s.bind_address}:{s.alertmanager_port}",
                "--cluster.listen-address=",
            ],
            env0,
            s.alertmanager_port,
            "ALERTMANAGER_PORT",
            url(s.alertmanager_port, "/-/ready"),
        ),
    )
    skipped.append(
        Skipped(
            "grafana",
            "Grafana is not part of native mode (no Debian package); the compose "
            "deployment runs it, or load deploy/grafana/ into any Grafana pointed at "
            "PROMETHEUS_PORT",
        )
    )
    return out, skipped
