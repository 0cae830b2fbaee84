"""The native stack's monitoring: exporters, Prometheus, Alertmanager.

The same components and config files as the compose deployment: the
prometheus-community / upstream exporters from Debian's packages, mtail for
nginx's request log, prefectstack's own exporter, Prometheus with the shared
rules, Alertmanager. Grafana has no Debian package, so native mode runs it only
when a `grafana-server` binary is installed (e.g. from Grafana's apt repository).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from .. import health
from ..settings import StackSettings
from .layout import Layout
from .tools import Tools

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Spec:
    name: str
    description: str
    argv: list[str]
    env: dict[str, str]
    port: int
    port_key: str
    probe_url: str
    udp: bool = False


def specs(
    s: StackSettings, layout: Layout, tools: Tools, env0: dict[str, str], prefect_env: dict
) -> tuple[list[Spec], list[tuple[str, str]]]:
    """Monitoring services to run, and (name, reason) of those skipped."""
    deploy = tools.deploy / "prometheus"
    out: list[Spec] = []
    skipped: list[tuple[str, str]] = []

    def add(binary: str | None, package: str, spec_fn) -> None:
        if binary is None:
            skipped.append((package, f"{package} is not installed (apt-get install {package})"))
        else:
            out.append(spec_fn(binary))

    def url(port: int, path: str = "/metrics") -> str:
        return f"http://{LOOPBACK}:{port}{path}"

    add(
        tools.which("prometheus-postgres-exporter"),
        "prometheus-postgres-exporter",
        lambda b: Spec(
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
        lambda b: Spec(
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
        lambda b: Spec(
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
        lambda b: Spec(
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
        Spec(
            "prefect-exporter",
            "Prefect exporter (prefectstack)",
            [sys.executable, "-m", "prefectstack", "exporter"],
            {
                **env0,
                **prefect_env,
                "PREFECT_API_URL": f"{s.lb_url}/api",
                "PREFECT_API_AUTH_STRING": s.auth_string,
                "PREFECTSTACK_EXPORTER_ADDRESS": LOOPBACK,
                "PREFECTSTACK_EXPORTER_PORT": str(s.prefect_exporter_port),
                "PREFECTSTACK_BACKUP_DIR": str(s.backup_dir),
            },
            s.prefect_exporter_port,
            "PREFECT_EXPORTER_PORT",
            url(s.prefect_exporter_port),
        )
    )
    add(
        tools.which("prometheus"),
        "prometheus",
        lambda b: Spec(
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
        lambda b: Spec(
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
    grafana = tools.which("grafana-server") or tools.which("grafana")
    if grafana is None:
        skipped.append(
            (
                "grafana",
                "Grafana has no Debian package; install it from Grafana's apt "
                "repository to run it natively, or use the compose deployment",
            )
        )
    return out, skipped


def probe_for(spec: Spec):
    return lambda: health.http_ok(spec.probe_url)
