"""Files and directories of a native stack inside its state directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def env_dir(self) -> Path:
        return self.run / "env"

    @property
    def supervisor_conf(self) -> Path:
        return self.run / "supervisord.conf"

    @property
    def supervisor_sock(self) -> Path:
        return self.run / "supervisor.sock"

    @property
    def supervisor_pid(self) -> Path:
        return self.run / "supervisord.pid"

    @property
    def supervisor_log(self) -> Path:
        return self.logs / "supervisord.log"

    @property
    def restarts(self) -> Path:
        return self.run / "restarts.json"

    @property
    def postgres(self) -> Path:
        return self.root / "postgres"

    @property
    def pgdata(self) -> Path:
        return self.postgres / "data"

    @property
    def pg_socket_dir(self) -> Path:
        return self.postgres / "socket"

    @property
    def pg_initialized(self) -> Path:
        return self.postgres / "initialized"

    @property
    def redis(self) -> Path:
        return self.root / "redis"

    @property
    def redis_local_conf(self) -> Path:
        return self.run / "redis-local.conf"

    @property
    def prefect_home(self) -> Path:
        return self.root / "prefect"

    @property
    def nginx(self) -> Path:
        return self.root / "nginx"

    @property
    def nginx_conf(self) -> Path:
        return self.run / "nginx.conf"

    @property
    def prometheus_conf(self) -> Path:
        return self.run / "prometheus.yml"

    @property
    def prometheus_password(self) -> Path:
        return self.run / "prometheus-prefect-password"

    @property
    def alertmanager_conf(self) -> Path:
        return self.run / "alertmanager.yml"

    def log_of(self, service: str) -> Path:
        return self.logs / f"{service}.log"

    def env_of(self, service: str) -> Path:
        return self.env_dir / f"{service}.json"
