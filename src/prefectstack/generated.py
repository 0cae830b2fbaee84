"""Configs the compose deployment mounts that are rendered from the templates
native mode renders at run time. They are committed (docker compose cannot run
Jinja2) and `prefectstack generate` rewrites them; a test fails when one is stale.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .loadbalancer import nginx_config
from .monitoring import config as mon
from .monitoring import dashboards
from .paths import deploy_dir

# Path under deploy/ -> renderer.
GENERATED: dict[Path, Callable[[], str]] = {
    nginx_config.COMPOSE_CONF: nginx_config.compose_conf,
    nginx_config.COMPOSE_TLS_CONF: lambda: nginx_config.compose_conf(tls=True),
    mon.COMPOSE_PROMETHEUS: mon.compose_prometheus,
    mon.COMPOSE_ALERTMANAGER_WEBHOOK: mon.compose_alertmanager_webhook,
    mon.COMPOSE_ALERTMANAGER_SILENT: mon.compose_alertmanager_silent,
    **{
        dashboards.DASHBOARD_DIR / name: (lambda b=builder: dashboards.render(b))
        for name, builder in dashboards.DASHBOARDS.items()
    },
}


def stale() -> list[Path]:
    root = deploy_dir()
    return [
        root / rel
        for rel, render in GENERATED.items()
        if not (root / rel).exists() or (root / rel).read_text() != render()
    ]


def write_all() -> list[Path]:
    root = deploy_dir()
    written = []
    for rel, render in GENERATED.items():
        path = root / rel
        text = render()
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            written.append(path)
    return written
