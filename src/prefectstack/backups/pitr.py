"""Point-in-time restore of the whole PostgreSQL cluster from pgBackRest's
repository: `prefectstack restore --to-time T` / `--to-latest`.

The procedure: archive the current WAL (when PostgreSQL still runs), check that
the repository covers the target, stop every process that uses the database and
PostgreSQL itself, set the data directory aside (the safety copy), restore the
newest base backup before the target and replay the archived WAL up to it,
wait for PostgreSQL to leave recovery, migrate, and start the rest behind the
usual health gates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from .pgbackrest import BackRestError, PgBackRest, RepoInfo

PROMOTE_TIMEOUT_S = 900.0


class PitrError(Exception):
    pass


class ClusterControl:
    """What a deployment mode provides for a point-in-time restore."""

    def pgbackrest(self) -> PgBackRest: ...
    def stop_database_users(self) -> None: ...
    def stop_database(self) -> None: ...
    def set_aside(self) -> Path | None: ...
    def start_database(self) -> None: ...
    def start_everything(self) -> None: ...

    def query(self, sql: str) -> str | None:
        """SQL's one value as text, or None while PostgreSQL cannot answer."""

    def in_recovery(self) -> bool | None:
        # As an integer: psql and psycopg print 1 and 0 alike (not t / True).
        return {"1": True, "0": False}.get(self.query("SELECT pg_is_in_recovery()::int"))


def window(info: RepoInfo, latest: datetime) -> tuple[datetime, datetime]:
    """The times a restore can reach: from the end of the oldest base backup to
    LATEST (the newest archived WAL)."""
    if info.oldest is None:
        raise PitrError(
            "the pgBackRest repository holds no base backup yet: `prefectstack backup --kind "
            "full` takes one (the scheduler takes the first when the stack starts)"
        )
    return info.oldest.stopped, latest


def restore(
    control: ClusterControl,
    target: datetime | None,
    report: Callable[[str], None],
) -> Path | None:
    """Restore to TARGET (UTC), or to the end of the archive; returns where the
    replaced data directory was set aside."""
    br = control.pgbackrest()
    # A recovery to a time stops at the first commit after it, and fails when the
    # archive holds none (an idle stack commits nothing): one is written now.
    control.query("SELECT pg_current_xact_id()::text")
    try:
        br.check()  # hands the current WAL segment to the repository
        latest = datetime.now(UTC)
        report("archived the current WAL")
    except BackRestError as exc:
        if target is not None:
            raise PitrError(
                f"the current WAL could not be archived, so the repository may not reach "
                f"{target.isoformat()}: {exc}"
            ) from None
        report(f"PostgreSQL's current WAL could not be archived (is it down?): {exc}")
        latest = None
    try:
        info = br.info()
    except BackRestError as exc:
        raise PitrError(str(exc)) from None
    start, _ = window(info, latest or datetime.now(UTC))
    if target is not None:
        if target < start:
            raise PitrError(
                f"{target.isoformat()} is before the oldest base backup ended "
                f"({start.isoformat()}): the repository cannot reach it"
            )
        if latest is not None and target > latest:
            raise PitrError(f"{target.isoformat()} is in the future")
    report("stopping the API replicas, background services, backups and exporters")
    control.stop_database_users()
    report("stopping PostgreSQL")
    control.stop_database()
    aside = control.set_aside()
    if aside:
        report(f"the current data directory is set aside in {aside}")
    what = target.isoformat() if target else "the end of the archive"
    report(f"restoring the base backup and replaying WAL to {what}")
    try:
        br.restore(target)
    except BackRestError as exc:
        raise PitrError(
            f"{exc}; the replaced data directory is in {aside}: move it back to undo"
        ) from None
    control.start_database()
    deadline = time.monotonic() + PROMOTE_TIMEOUT_S
    while control.in_recovery() is not False:
        if time.monotonic() > deadline:
            raise PitrError(
                f"PostgreSQL did not finish recovery in {PROMOTE_TIMEOUT_S:.0f}s (its log "
                f"says why); the replaced data directory is in {aside}: move it back to undo"
            )
        time.sleep(1)
    report("PostgreSQL is out of recovery; migrating and starting the stack")
    control.start_everything()
    return aside
