"""pgAdmin and the Redis web UI in native mode: optional, password-protected.

They come from .tools/ (installed by scripts/install_native.sh); without it they
are skipped with a notice instead of failing the stack.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .. import health
from ..render import render
from ..settings import StackSettings
from .layout import Layout
from .service import ADDONS_STAGE, Service, Skipped
from .tools import Tools

INSTALL = "run scripts/install_native.sh to install it"


def pgadmin_site(tools: Tools) -> Path | None:
    if tools.pgadmin_python is None:
        return None
    found = sorted(tools.pgadmin_python.parent.parent.glob("lib/python3*/site-packages/pgadmin4"))
    return found[-1] if found else None


def pgadmin(
    s: StackSettings, layout: Layout, tools: Tools, env0: dict[str, str], loopback: str
) -> Service | Skipped:
    site = pgadmin_site(tools)
    if site is None:
        return Skipped("pgadmin", f"pgAdmin is not installed; {INSTALL}")
    venv_bin = tools.pgadmin_python.parent
    root = layout.root / "pgadmin"
    config_dir, data_dir = root / "config", root / "data"
    env = {**env0, "PYTHONPATH": str(config_dir)}
    argv = [
        str(venv_bin / "gunicorn"),
        "--chdir", str(site),
        "--bind", f"{s.bind_address}:{s.pgadmin_port}",
        "--workers", "1",  # pgAdmin keeps session state in-process
        "--threads", "25",
        "--timeout", "86400",
        "--access-logfile", "-",
        "pgAdmin4:app",
    ]  # fmt: skip

    def prepare() -> None:
        for path in (root, config_dir, data_dir):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o700)
        (config_dir / "config_local.py").write_text(
            render("pgadmin/config_local.py.j2", data_dir=data_dir)
        )
        servers = data_dir / "servers.json"
        _run(
            ["sh", str(tools.deploy / "pgadmin" / "prepare.sh")],
            {
                **env0,
                "SERVERS_JSON": str(servers),
                "STORAGE_DIR": str(data_dir / "storage"),
                "PGADMIN_DEFAULT_EMAIL": s.pgadmin_default_email,
                "PROJECT_NAME": s.project_name,
                "PG_HOST": loopback,
                "PG_PORT": str(s.postgres_port),
                "POSTGRES_USER": s.postgres_user,
                "POSTGRES_PASSWORD": s.postgres_password.get_secret_value(),
                "POSTGRES_DB": s.postgres_db,
            },
        )
        marker = root / "initialized"
        if marker.exists():
            return
        cli = str(venv_bin / "pgadmin4-cli")
        setup_env = {
            **env,
            "PGADMIN_SETUP_EMAIL": s.pgadmin_default_email,
            "PGADMIN_SETUP_PASSWORD": s.pgadmin_default_password.get_secret_value(),
        }
        _run([cli, "setup-db"], setup_env)
        _run([cli, "load-servers", str(servers), "--user", s.pgadmin_default_email], env)
        marker.write_text("pgAdmin database created and the stack's server loaded\n")

    return Service(
        name="pgadmin",
        description="pgAdmin",
        argv=argv,
        env=env,
        probe=lambda: health.http_ok(f"http://{loopback}:{s.pgadmin_port}/misc/ping"),
        prepare=prepare,
        stage=ADDONS_STAGE,
        port=s.pgadmin_port,
        port_key="PGADMIN_PORT",
        start_timeout=120.0,
    )


def redis_ui(
    s: StackSettings, tools: Tools, env0: dict[str, str], loopback: str
) -> Service | Skipped:
    if tools.redis_commander is None:
        return Skipped("redis-ui", f"redis-commander is not installed; {INSTALL}")
    if tools.node is None:
        return Skipped("redis-ui", "node is not installed (apt-get install nodejs)")
    password = s.redis_ui_password.get_secret_value()
    connection = {
        "label": s.project_name,
        "host": loopback,
        "port": s.prefect_redis_messaging_port,
        "password": s.redis_password.get_secret_value(),
        "dbIndex": s.prefect_redis_messaging_db,
    }
    # Secrets go through the environment, never argv (visible in `ps`).
    env = {
        **env0,
        "ADDRESS": s.bind_address,
        "PORT": str(s.ardm_port),
        "HTTP_USER": s.redis_ui_user,
        "HTTP_PASSWORD": password,
        "NOSAVE": "true",
        "NODE_ENV": "production",
        "NODE_CONFIG": json.dumps({"connections": [connection]}),
    }
    argv = [tools.node, str(tools.redis_commander)]

    return Service(
        name="redis-ui",
        description="Redis web UI (redis-commander)",
        argv=argv,
        env=env,
        probe=lambda: health.redis_ui_ok(
            f"http://{loopback}:{s.ardm_port}", s.redis_ui_user, password
        ),
        stage=ADDONS_STAGE,
        port=s.ardm_port,
        port_key="ARDM_PORT",
    )


def _run(argv: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:2])} failed: {(result.stderr or result.stdout).strip()[-2000:]}"
        )
