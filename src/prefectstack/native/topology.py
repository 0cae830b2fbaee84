"""The native stack's services: what runs, in which order, and how each is checked.

The same topology as docker-compose.yml, with loopback addresses instead of
compose service names. Each service has a start stage: every service of a
stage must be healthy (or, for one-shot jobs, have exited 0) before the next
stage starts, like compose's `depends_on: condition: service_healthy /
service_completed_successfully`.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from .. import health
from ..prefect_env import Endpoints, connection_env, server_env
from ..releases import runtime
from ..settings import StackSettings
from . import archiving, monitoring, postgres, webuis
from .launch import read_pid
from .layout import Layout
from .service import ADDONS_STAGE, Service, Skipped
from .tools import Tools

LOOPBACK = "127.0.0.1"
# Listeners on BIND_ADDRESS (what compose publishes); everything else is loopback.
PUBLIC_PORT_KEYS = {
    "PREFECT_PORT",
    "PGADMIN_PORT",
    "ARDM_PORT",
    "GRAFANA_PORT",
    "PROMETHEUS_PORT",
    "ALERTMANAGER_PORT",
}


def endpoints(s: StackSettings) -> Endpoints:
    return Endpoints(LOOPBACK, s.postgres_port, LOOPBACK, s.prefect_redis_messaging_port)


def base_env(layout: Layout) -> dict[str, str]:
    """What every child gets; nothing leaks in from the caller's shell."""
    venv_bin = str(Path(sys.executable).parent)
    return {
        "PATH": f"{venv_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(layout.prefect_home),
        "TZ": "UTC",
    }


def build(s: StackSettings, layout: Layout, tools: Tools) -> tuple[list[Service], list[Skipped]]:
    services: list[Service] = []
    skipped: list[Skipped] = []
    ep = endpoints(s)
    env0 = base_env(layout)
    # Found on PATH in the release's own environment (releases/runtime.py): an
    # upgrade changes each process's environment, not its command, so
    # supervisord restarts none of them until the rollout does.
    prefect = "prefect"
    prefect_path = f"{runtime.bin_dir(s.prefect_version)}:{env0['PATH']}"
    ui_dir = layout.prefect_home / f"ui-{s.prefect_version}"
    password = s.postgres_password.get_secret_value()
    redis_password = s.redis_password.get_secret_value()

    def redis_db(db: int):
        return health.redis_client(
            host=LOOPBACK, port=s.prefect_redis_messaging_port, password=redis_password, db=db
        )

    def prefect_env(app_name: str, **extra: str) -> dict[str, str]:
        return {
            **env0,
            "PATH": prefect_path,
            **server_env(s, ep, application_name=app_name),
            "PREFECT_HOME": str(layout.prefect_home),
            **extra,
        }

    services.append(
        Service(
            name="postgres",
            description="PostgreSQL",
            argv=postgres.server_argv(
                tools.pg_bindir, layout, s, archiving.archive_command(layout, s)
            ),
            stage=0,
            port=s.postgres_port,
            port_key="POSTGRES_PORT",
            user=postgres.run_as_user(),
            stop_signal="INT",  # fast shutdown: roll back, checkpoint, exit
            stop_wait=60,
            probe=lambda: health.postgres_ok(
                host=LOOPBACK,
                port=s.postgres_port,
                user=s.postgres_user,
                password=password,
                dbname="postgres",
                wake_marker=layout.pg_socket_dir / health.WAKE_MARKER,
            ),
        )
    )
    services.append(
        Service(
            name="redis",
            description="Redis (broker, cache, leases, docket)",
            argv=[
                tools.redis_server,
                str(tools.deploy / "redis" / "redis.conf"),
                "--include",
                str(layout.redis_local_conf),
            ],
            stage=0,
            port=s.prefect_redis_messaging_port,
            port_key="PREFECT_REDIS_MESSAGING_PORT",
            probe=lambda: health.redis_ok(
                host=LOOPBACK, port=s.prefect_redis_messaging_port, password=redis_password
            ),
        )
    )
    services.append(
        Service(
            name="migrate",
            description="one-shot Prefect database migration",
            argv=[prefect, "server", "database", "upgrade", "-y"],
            env=prefect_env("prefect-migrate"),
            stage=1,
            oneshot=True,
            startsecs=0,
            startretries=0,
            start_timeout=600.0,
        )
    )
    for i, port in enumerate(s.api_ports, start=1):
        services.append(
            Service(
                name=f"api-{i}",
                description=f"Prefect API replica {i}",
                argv=[
                    prefect,
                    "server",
                    "start",
                    "--no-services",
                    "--host",
                    LOOPBACK,
                    "--port",
                    str(port),
                ],
                env=prefect_env(
                    f"prefect-api-{i}",
                    PREFECT_SERVER_API_HOST=LOOPBACK,
                    PREFECT_SERVER_API_PORT=str(port),
                    # Each release writes its own UI files there.
                    PREFECT_UI_STATIC_DIRECTORY=str(ui_dir),
                ),
                # Alone first on a fresh database: replicas starting together race
                # to register the default block types and one of them exits.
                stage=2 if i == 1 else 3,
                port=port,
                port_key="PREFECT_API_FIRST_PORT",
                startsecs=10,
                startretries=3,
                start_timeout=180.0,
                probe=lambda port=port: health.http_ok(f"http://{LOOPBACK}:{port}/api/ready"),
            )
        )
    for i in range(1, s.prefect_services_replicas + 1):
        name = f"services-{i}"
        services.append(
            Service(
                name=name,
                description=f"Prefect background services, process {i}",
                argv=[prefect, "server", "services", "start"],
                env=prefect_env(f"prefect-services-{i}", PREFECT_SERVER_UI_ENABLED="false"),
                stage=4,
                # Python has no SIGTERM handler: the process would end at once, with
                # events its recorders had acknowledged still in memory. On SIGINT
                # the services stop and flush them (as compose's stop_signal).
                stop_signal="INT",
                startsecs=10,
                start_timeout=120.0,
                probe=lambda name=name: health.background_services_ok(
                    redis_db(s.prefect_redis_messaging_db),
                    redis_db(s.prefect_docket_redis_db),
                    host=socket.gethostname(),
                    pid=read_pid(str(layout.env_of(name))) or -1,
                ),
            )
        )
    services.append(
        Service(
            name="nginx",
            description="nginx load balancer",
            argv=[
                tools.nginx,
                "-p",
                str(layout.nginx),
                "-c",
                str(layout.nginx_conf),
                "-g",
                "daemon off;",
            ],
            stage=5,
            port=s.prefect_port,
            port_key="PREFECT_PORT",
            stop_signal="QUIT",  # graceful: finish in-flight requests
            # The public listener as users reach it (with TLS: that it answers;
            # an operator's certificate need not name the loopback address).
            probe=lambda: health.http_ok(f"{s.lb_url}/api/health", verify=not s.tls),
        )
    )
    for addon in (
        webuis.pgadmin(s, layout, tools, env0, LOOPBACK),
        webuis.redis_ui(s, tools, env0, LOOPBACK),
    ):
        (skipped if isinstance(addon, Skipped) else services).append(addon)
    services.append(
        Service(
            name="backups",
            description=f"scheduled PostgreSQL backups ({s.backup_schedule})",
            argv=[
                sys.executable,
                "-m",
                "prefectstack",
                "backup-scheduler",
                "--env-file",
                str(s.env_path),
            ],
            env=env0,
            stage=ADDONS_STAGE,
        )
    )
    services.append(archiving.scheduler(layout, s, tools.pg_bindir))
    mon, mon_skipped = monitoring.services(s, layout, tools, env0, connection_env(s, ep))
    services += mon
    skipped += mon_skipped
    for svc in services:
        if svc.env is not None:
            svc.env_file = layout.env_of(svc.name)
    return services, skipped


def listeners(s: StackSettings, services: list[Service]) -> list[tuple[str, str, int, bool]]:
    """(service, .env key, port, udp) of every port the native stack listens on."""
    out = [(svc.name, svc.port_key or "", svc.port, svc.udp) for svc in services if svc.port]
    out.append(("nginx", "NGINX_STATUS_PORT", s.nginx_status_port, False))
    return out
