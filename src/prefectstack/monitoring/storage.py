"""PostgreSQL's WAL archiving and the database's growth, for doctor and the
exporter: what pg_stat_archiver says, how long the oldest segment has waited to
be archived, the database's size, its largest tables and the free space of the
filesystems that hold the data and the backups."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

ARCHIVER_SQL = """
SELECT archived_count, last_archived_time, failed_count, last_failed_time, last_failed_wal,
       current_setting('archive_mode'),
       (SELECT setting::int FROM pg_settings WHERE name = 'archive_timeout')
FROM pg_stat_archiver
"""
# Segments PostgreSQL has finished and not yet handed to the archiver (superuser).
READY_SQL = """
SELECT count(*), min(modification)
FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'
"""
TABLES_SQL = """
SELECT relname, n_live_tup, pg_total_relation_size(relid)
FROM pg_stat_user_tables ORDER BY pg_total_relation_size(relid) DESC LIMIT %s
"""


@dataclass(frozen=True)
class ArchiverStatus:
    mode: str  # archive_mode
    timeout_s: int  # archive_timeout
    archived: int
    last_archived_at: datetime | None
    failed: int
    last_failed_at: datetime | None
    last_failed_wal: str | None
    waiting: int  # segments not archived yet
    oldest_waiting_at: datetime | None

    @property
    def failing(self) -> bool:
        """The most recent attempt failed."""
        return self.last_failed_at is not None and (
            self.last_archived_at is None or self.last_failed_at > self.last_archived_at
        )

    def lag_s(self, now: datetime | None = None) -> float:
        """How long the oldest segment has waited to be archived (0: none waits)."""
        if self.oldest_waiting_at is None:
            return 0.0
        return max(0.0, ((now or datetime.now(UTC)) - self.oldest_waiting_at).total_seconds())


def archiver_status(conn: psycopg.Connection) -> ArchiverStatus:
    archived, last_ok, failed, last_bad, bad_wal, mode, timeout = conn.execute(
        ARCHIVER_SQL
    ).fetchone()
    waiting, oldest = conn.execute(READY_SQL).fetchone()
    return ArchiverStatus(
        mode=mode,
        timeout_s=timeout,
        archived=archived,
        last_archived_at=last_ok,
        failed=failed,
        last_failed_at=last_bad,
        last_failed_wal=bad_wal,
        waiting=waiting,
        oldest_waiting_at=oldest,
    )


def database_size(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]


def largest_tables(conn: psycopg.Connection, limit: int = 10) -> list[tuple[str, int, int]]:
    """(table, live rows, bytes with indexes and TOAST), largest first."""
    return [tuple(row) for row in conn.execute(TABLES_SQL, (limit,)).fetchall()]


def filesystem(path: Path) -> tuple[int, int]:
    """(available, total) bytes of the filesystem holding PATH."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
