"""Backup, verify and restore of the stack's database.

verify restores a dump into a scratch database and compares the Prefect schema
version and the rows of every table with what the dump claims. restore goes
through the same scratch restore (so a bad file is refused before anything is
touched), takes a backup of the current database, stops the API writers,
swaps the databases, migrates to the current schema and starts the writers.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from . import layout
from .dumpfile import DumpError, read_claims
from .pg import PgClient, PgError


class BackupError(Exception):
    pass


@dataclass
class VerifyReport:
    file: Path
    schema_version: str | None
    tables: dict[str, tuple[int, int]]  # table -> (claimed, restored)

    @property
    def mismatches(self) -> dict[str, tuple[int, int]]:
        return {t: c for t, c in self.tables.items() if c[0] != c[1]}

    @property
    def total_rows(self) -> int:
        return sum(claimed for claimed, _ in self.tables.values())


class StackControl:
    """What restore needs from a deployment mode."""

    def stop_writers(self) -> None:
        """Stop every process that writes to the database (API replicas, services)."""
        raise NotImplementedError

    def start_writers(self) -> None:
        """Run the one-shot migration, then start the writers behind their health gates."""
        raise NotImplementedError


def backup_now(pg: PgClient, root: Path, db: str, retention: layout.Retention) -> Path:
    layout.ensure_dirs(root)
    # The scheduler and a `prefectstack backup` may start in the same second:
    # one at a time, each under its own name.
    with layout.exclusive(root):
        when = layout.free_moment(root, db, datetime.now())
        fd, name = tempfile.mkstemp(prefix=f".{db}-", suffix=".partial", dir=root / "last")
        os.close(fd)
        tmp = Path(name)
        try:
            pg.dump(db, tmp)
            read_claims(tmp)  # never file a dump that is not complete
        except (PgError, DumpError) as exc:
            tmp.unlink(missing_ok=True)
            raise BackupError(f"backup failed: {exc}") from None
        final = layout.file_into_folders(root, db, tmp, when)
        layout.prune(root, db, retention)
    return final


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _restore_scratch(pg: PgClient, db: str, dump: Path, scratch: str) -> VerifyReport:
    try:
        claims = read_claims(dump)
    except DumpError as exc:
        raise BackupError(str(exc)) from None
    pg.query("postgres", f"DROP DATABASE IF EXISTS {_ident(scratch)}")
    pg.query("postgres", f"CREATE DATABASE {_ident(scratch)}")
    try:
        pg.load(scratch, dump)
        tables = {}
        for table, claimed in claims.rows.items():
            schema, _, name = table.partition(".")
            restored = int(
                pg.query(scratch, f"SELECT count(*) FROM {_ident(schema)}.{_ident(name)}")
            )
            tables[table] = (claimed, restored)
        version = None
        if claims.schema_version is not None:
            version = pg.query(scratch, "SELECT version_num FROM public.alembic_version").strip()
            if version != claims.schema_version:
                raise BackupError(
                    f"schema version {version!r} after restore, dump says {claims.schema_version!r}"
                )
    except (PgError, BackupError):
        pg.query("postgres", f"DROP DATABASE IF EXISTS {_ident(scratch)}")
        raise
    report = VerifyReport(dump, version, tables)
    if report.mismatches:
        pg.query("postgres", f"DROP DATABASE IF EXISTS {_ident(scratch)}")
        detail = ", ".join(
            f"{t}: dump {c} != restored {r}" for t, (c, r) in report.mismatches.items()
        )
        raise BackupError(f"row counts differ after restore: {detail}")
    return report


def verify(pg: PgClient, db: str, dump: Path) -> VerifyReport:
    scratch = f"{db}_verify_{int(time.time())}"
    try:
        return _restore_scratch(pg, db, dump, scratch)
    except PgError as exc:
        raise BackupError(f"{dump} does not restore: {exc}") from None
    finally:
        pg.query("postgres", f"DROP DATABASE IF EXISTS {_ident(scratch)}")


def restore(
    pg: PgClient,
    control: StackControl,
    *,
    db: str,
    dump: Path,
    root: Path,
    retention: layout.Retention,
    report: Callable[[str], None],
) -> tuple[VerifyReport, Path]:
    stamp = time.strftime("%Y%m%d%H%M%S")
    incoming, previous = f"{db}_restore_{stamp}", f"{db}_before_restore_{stamp}"
    report(f"restoring {dump.name} into a scratch database and checking it")
    try:
        checked = _restore_scratch(pg, db, dump, incoming)
    except PgError as exc:
        raise BackupError(f"{dump} does not restore; nothing was changed: {exc}") from None
    try:
        report("taking a backup of the current database first")
        safety = backup_now(pg, root, db, retention)
        report(f"  {safety}")
        report("stopping the API replicas and background services")
        control.stop_writers()
        # Readers (exporters, pgAdmin) reconnect on their own; keep them out
        # while the databases swap.
        pg.query("postgres", f"ALTER DATABASE {_ident(db)} WITH ALLOW_CONNECTIONS false")
        pg.query(
            "postgres",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{db}' AND pid <> pg_backend_pid()",
        )
        pg.query("postgres", f"ALTER DATABASE {_ident(db)} RENAME TO {_ident(previous)}")
        pg.query("postgres", f"ALTER DATABASE {_ident(incoming)} RENAME TO {_ident(db)}")
    except (PgError, BackupError):
        pg.query("postgres", f"DROP DATABASE IF EXISTS {_ident(incoming)}")
        pg.query("postgres", f"ALTER DATABASE {_ident(db)} WITH ALLOW_CONNECTIONS true")
        control.start_writers()
        raise
    report("migrating to the current Prefect schema and starting the API and services")
    control.start_writers()
    # The pre-restore database is also in the safety backup taken above.
    pg.query("postgres", f"DROP DATABASE IF EXISTS {_ident(previous)}")
    return checked, safety
