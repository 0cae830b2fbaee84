"""Compose mode's pgBackRest: commands run in the `pgbackrest` service (the
postgres image with the data volume, the repository and the server's socket),
and its side of a point-in-time restore."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from ..backups.pgbackrest import PgBackRest
from ..backups.pitr import ClusterControl
from ..settings import StackSettings
from .operations import ComposeError, _run, base, wait_lb_serving

# Everything that holds database connections, besides PostgreSQL itself.
DATABASE_USERS = ("prefect-api", "prefect-background", "pgbackups", "pgbackrest",
                  "prefect-exporter", "postgres-exporter", "pgadmin")  # fmt: skip


def pgbackrest_client(s: StackSettings) -> PgBackRest:
    """pgBackRest inside the running scheduler container."""
    return PgBackRest([*base(s), "exec", "-T", "pgbackrest"], [])


class ComposeCluster(ClusterControl):
    def __init__(self, s: StackSettings):
        self.s = s
        self.compose = base(s)

    def pgbackrest(self) -> PgBackRest:
        return _OneOff(self.compose)

    def stop_database_users(self) -> None:
        _run([*self.compose, "stop", *DATABASE_USERS])

    def stop_database(self) -> None:
        _run([*self.compose, "stop", "postgres"])

    def set_aside(self) -> Path | None:
        """A tarball of the data volume in the repository's folder (a volume's root
        cannot be renamed), then the volume emptied for the restore."""
        name = f"data-before-restore-{time.strftime('%Y%m%d-%H%M%S')}.tar.gz"
        script = (
            "set -e; cd /var/lib/postgresql/data; [ -s PG_VERSION ] || exit 3; "
            f"mkdir -p /pgbackrest/safety; tar -czf /pgbackrest/safety/{name} .; "
            "find . -mindepth 1 -delete"
        )
        result = subprocess.run(
            [*self.compose, "run", "--rm", "--no-deps", "-T", "--entrypoint", "sh",
             "pgbackrest", "-c", script],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode == 3:
            return None  # nothing to keep: the data directory is gone already
        if result.returncode != 0:
            raise ComposeError(f"setting the data volume aside failed: {result.stderr[-1500:]}")
        return self.s.pgbackrest_repo / "safety" / name

    def start_database(self) -> None:
        _run([*self.compose, "up", "-d", "--no-deps", "--wait", "postgres"])

    def query(self, sql: str) -> str | None:
        result = subprocess.run(
            [*self.compose, "exec", "-T", "postgres", "psql", "-X", "-tA", "-U",
             self.s.postgres_user, "-d", "postgres", "-c", sql],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        return result.stdout.strip() if result.returncode == 0 else None

    def start_everything(self) -> None:
        _run([*self.compose, "run", "--rm", "prefect-migrate"])
        _run([*self.compose, "up", "-d", "--wait"])
        wait_lb_serving(self.s)


class _OneOff(PgBackRest):
    """pgBackRest in the running scheduler while there is one, else in a one-off
    container of the same service (PostgreSQL and the scheduler are stopped
    during a restore)."""

    def __init__(self, compose: list[str]):
        super().__init__([], [])
        self.compose = compose

    def run(self, command: str, *options: str, timeout: float = 3600) -> str:
        running = subprocess.run(
            [*self.compose, "ps", "-q", "--status", "running", "pgbackrest"],
            capture_output=True, text=True, check=False,
        ).stdout.strip()  # fmt: skip
        # `env` as the entry point runs the `pgbackrest ...` words as they are.
        one_off = ["run", "--rm", "--no-deps", "-T", "--entrypoint", "env"]
        how = ["exec", "-T"] if running else one_off
        self.prefix = [*self.compose, *how, "pgbackrest"]
        return super().run(command, *options, timeout=timeout)
