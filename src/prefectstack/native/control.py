"""Native mode's side of a restore: which processes write to the database, and
how the cluster is stopped, set aside and started for a point-in-time restore."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import psycopg

from ..backups.operations import StackControl
from ..backups.pgbackrest import PgBackRest
from ..backups.pitr import ClusterControl
from . import archiving, postgres
from .stack import NativeStack


class NativeControl(StackControl):
    def __init__(self, stack: NativeStack):
        self.stack = stack

    def writers(self) -> list[str]:
        return [
            svc.name for svc in self.stack.services if svc.name.startswith(("api-", "services-"))
        ]

    def stop_writers(self) -> None:
        self.stack.stop_many(self.writers())

    def start_writers(self) -> None:
        self.stack.up()  # runs the one-shot migration before the replicas


class NativeCluster(ClusterControl):
    """Native mode's side of a point-in-time restore."""

    # Everything that holds database connections, besides PostgreSQL itself.
    USERS_PREFIXES = ("api-", "services-", "backups", "pgbackrest", "prefect-exporter",
                      "postgres-exporter", "pgadmin")  # fmt: skip

    def __init__(self, stack: NativeStack):
        self.stack = stack

    def pgbackrest(self) -> PgBackRest:
        return archiving.client(self.stack.layout, self.stack.s)

    def stop_database_users(self) -> None:
        services = self.stack.services
        self.stack.stop_many([s.name for s in services if s.name.startswith(self.USERS_PREFIXES)])

    def stop_database(self) -> None:
        self.stack.sup.stop("postgres")

    def set_aside(self) -> Path | None:
        """Renames the data directory (nothing is copied) and leaves an empty one."""
        pgdata = self.stack.layout.pgdata
        aside = None
        if pgdata.exists():
            aside = pgdata.with_name(f"data.before-restore-{time.strftime('%Y%m%d-%H%M%S')}")
            pgdata.rename(aside)
        pgdata.mkdir(mode=0o700)
        user = postgres.run_as_user()
        if user:
            shutil.chown(pgdata, user, user)
        return aside

    def start_database(self) -> None:
        self.stack.start_healthy(["postgres"])

    def query(self, sql: str) -> str | None:
        s = self.stack.s
        try:
            with psycopg.connect(
                host="127.0.0.1", port=s.postgres_port, user=s.postgres_user,
                password=s.postgres_password.get_secret_value(), dbname="postgres",
                connect_timeout=5, application_name="prefectstack-restore",
            ) as conn:  # fmt: skip
                return str(conn.execute(sql).fetchone()[0])
        except psycopg.Error:
            return None

    def start_everything(self) -> None:
        self.stack.up()  # the one-shot migration runs before the replicas
