"""Backups: backup, backup list, backup verify, restore, and the native scheduler."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .app import app
from .common import (
    DEFAULT_ENV,
    EnvFile,
    Mode,
    check_mode,
    compose_guard,
    console,
    err,
    fail,
    guarded,
    native,
    postgres,
    settings_from,
)

backup_app = typer.Typer(
    help="PostgreSQL backups (the compose pgbackups layout: last/ daily/ weekly/ monthly/).",
    invoke_without_command=True,
)
app.add_typer(backup_app, name="backup")


def _backup_context(env_file: Path, mode: str):
    """(settings, PostgreSQL client, retention, native stack or None) for a mode."""
    from ..backups.layout import Retention

    s, client, stack = postgres(env_file, mode)
    retention = Retention(s.backup_keep_days, s.backup_keep_weeks, s.backup_keep_months)
    return s, client, retention, stack


def _backup_guard(action):
    from ..backups.operations import BackupError
    from ..backups.pg import PgError
    from ..compose.operations import ComposeError

    try:
        return guarded(action)
    except (BackupError, PgError, ComposeError) as exc:
        raise fail([str(exc)]) from None


@backup_app.callback()
def backup(
    ctx: typer.Context,
    env_file: EnvFile = DEFAULT_ENV,
    mode: Mode = "native",
    kind: Annotated[
        str,
        typer.Option(
            help="dump (pg_dump of the Prefect database), or a pgBackRest base backup of "
            "the cluster: full, diff, incr."
        ),
    ] = "dump",
) -> None:
    """Take a backup now (without a subcommand)."""
    if ctx.invoked_subcommand is not None:
        return
    if kind not in ("dump", "full", "diff", "incr"):
        raise fail([f"--kind {kind}: use dump, full, diff or incr"])
    if kind != "dump":
        _base_backup(kind, env_file, mode)
        return
    from ..backups.operations import backup_now

    s, pg, retention, _ = _backup_context(env_file, mode)
    if mode == "compose":
        from ..compose import operations as compose_ops

        path = _backup_guard(lambda: compose_ops.backup_now(s))
    else:
        path = _backup_guard(lambda: backup_now(pg, s.backup_dir, s.postgres_db, retention))
    console.print(f"backup written: {path} ({path.stat().st_size} bytes)")


def _repository_source(s, mode: str):
    """The repository's directory, or, for an S3 store, pgBackRest as MODE runs it."""
    if mode == "compose" and s.pgbackrest_repo_type == "s3":
        from ..compose.archiving import pgbackrest_client

        return compose_guard(lambda: pgbackrest_client(s))
    from ..native import archiving
    from ..native.layout import Layout

    return archiving.repository_source(Layout(s.state_dir), s)


def _base_backup(kind: str, env_file: Path, mode: str) -> None:
    from ..backups import repository
    from ..backups.pgbackrest import BackRestError

    check_mode(mode)
    s = settings_from(env_file)
    if mode == "compose":
        from ..compose.archiving import pgbackrest_client

        client = compose_guard(lambda: pgbackrest_client(s))
    else:
        from ..native import archiving

        stack = native(env_file)
        client = archiving.client(stack.layout, s)
    try:
        with console.status(f"pgBackRest {kind} backup"):
            client.backup(kind)
    except BackRestError as exc:
        raise fail([str(exc)]) from None
    newest = repository.status(_repository_source(s, mode), s.project_name).newest()
    console.print(f"base backup written: {newest.label if newest else '?'} ({kind})")


@backup_app.command("list")
def backup_list(
    env_file: EnvFile = DEFAULT_ENV,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    mode: Mode = "native",
) -> None:
    """List the backups: pg_dump files per folder and pgBackRest base backups,
    oldest first, and the span a point-in-time restore can reach."""
    from ..backups import repository
    from ..backups.layout import listing
    from ..backups.pgbackrest import BackRestError

    check_mode(mode)
    s = settings_from(env_file)
    files = listing(s.backup_dir, s.postgres_db)
    try:
        repo = repository.status(_repository_source(s, mode), s.project_name)
    except BackRestError as exc:
        raise fail([str(exc)]) from None
    window = repo.window
    if as_json:
        print(json.dumps({
            "dumps": [f.as_dict() for f in files],
            "base_backups": [
                {"label": b.label, "kind": b.kind, "size": b.size,
                 "started": b.started.isoformat(), "stopped": b.stopped.isoformat()}
                for b in repo.backups
            ],
            "recoverable": {"from": window[0].isoformat(), "to": window[1].isoformat()}
            if window else None,
        }, indent=2))  # fmt: skip
        return
    if files:
        table = Table("folder", "file", "size", "created", title="pg_dump backups")
        for f in files:
            row = f.as_dict()
            table.add_row(f.folder, f.path.name, f"{f.size / 1e6:.1f} MB", row["created"])
        console.print(table)
    else:
        console.print(f"no pg_dump backups in {s.backup_dir}")
    if repo.backups:
        columns = ("label", "kind", "size", "started", "finished")
        table = Table(*columns, title="pgBackRest base backups")
        for b in repo.backups:
            table.add_row(b.label, b.kind, f"{b.size / 1e6:.1f} MB",
                          b.started.isoformat(timespec="seconds"),
                          b.stopped.isoformat(timespec="seconds"))  # fmt: skip
        console.print(table)
        console.print(
            f"point-in-time restore reaches {window[0].isoformat(timespec='seconds')} "
            f"to {window[1].isoformat(timespec='seconds')} (restore --to-time)"
        )
    else:
        console.print(f"no pgBackRest base backup in {s.pgbackrest_repo_name}")


@backup_app.command("verify")
def backup_verify(file: Path, env_file: EnvFile = DEFAULT_ENV, mode: Mode = "native") -> None:
    """Restore FILE into a scratch database and compare it with what the dump claims."""
    from ..backups.operations import verify

    s, pg, _, _ = _backup_context(env_file, mode)
    report = _backup_guard(lambda: verify(pg, s.postgres_db, file))
    console.print(
        f"[green]{file} is good[/green]: schema version {report.schema_version}, "
        f"{len(report.tables)} tables, {report.total_rows} rows, all as the dump claims"
    )


@app.command()
def restore(
    file: Annotated[Path | None, typer.Argument(help="A pg_dump backup (backup list).")] = None,
    to_time: Annotated[
        datetime | None,
        typer.Option(
            "--to-time",
            formats=[
                "%Y-%m-%dT%H:%M:%S.%f%z",
                "%Y-%m-%dT%H:%M:%S%z",
                "%Y-%m-%dT%H:%M:%S.%f",
                "%Y-%m-%dT%H:%M:%S",
                "%Y-%m-%d %H:%M:%S",
            ],
            help="Point-in-time restore of the cluster from pgBackRest's repository to this "
            "time (ISO 8601; UTC unless it has an offset).",
        ),
    ] = None,
    to_latest: Annotated[
        bool, typer.Option("--to-latest", help="Point-in-time restore to the end of the archive.")
    ] = False,
    env_file: EnvFile = DEFAULT_ENV,
    mode: Mode = "native",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Replace the database with FILE (a backup of the current one is taken first), or
    the whole cluster with its state at --to-time / --to-latest."""
    if sum((file is not None, to_time is not None, to_latest)) != 1:
        raise fail(["give one of FILE, --to-time TIMESTAMP or --to-latest"])
    if file is None:
        target = None if to_latest else _utc(to_time)
        _restore_to(target, env_file, mode, yes)
        return
    from ..backups.operations import restore as do_restore

    s, pg, retention, stack = _backup_context(env_file, mode)
    if not file.is_file():
        raise fail([f"{file}: no such file; `prefectstack backup list` shows the backups"])
    if stack is None:
        from ..compose.operations import ComposeControl

        control = compose_guard(lambda: ComposeControl(s))
    else:
        from ..native.control import NativeControl

        control = NativeControl(stack)
    if not yes:
        typer.confirm(
            f"Replace database {s.postgres_db} with {file}? The API is stopped "
            "meanwhile; the current database is backed up first",
            abort=True,
        )
    checked, safety = _backup_guard(
        lambda: do_restore(
            pg,
            control,
            db=s.postgres_db,
            dump=file,
            root=s.backup_dir,
            retention=retention,
            report=lambda line: err.print(f"  {line}"),
        )
    )
    console.print(
        f"[green]restored[/green] {file} ({checked.total_rows} rows); a backup of the "
        f"database it replaced: {safety}"
    )


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _restore_to(target: datetime | None, env_file: Path, mode: str, yes: bool) -> None:
    from ..backups import pitr

    check_mode(mode)
    if mode == "compose":
        from ..compose.archiving import ComposeCluster

        control = compose_guard(lambda: ComposeCluster(settings_from(env_file)))
    else:
        from ..native.control import NativeCluster

        control = NativeCluster(native(env_file))
    what = target.isoformat() if target else "the end of the WAL archive"
    if not yes:
        typer.confirm(
            f"Restore the whole PostgreSQL cluster to {what}? Everything written after it is "
            "lost; the stack stops meanwhile and the current data is set aside first",
            abort=True,
        )
    try:
        aside = guarded(lambda: pitr.restore(control, target, lambda line: err.print(f"  {line}")))
    except pitr.PitrError as exc:
        raise fail([str(exc)]) from None
    console.print(f"[green]restored[/green] the cluster to {what}")
    if aside:
        console.print(f"the data it replaced is in {aside}: delete it once the stack is checked")


@app.command("backup-scheduler", hidden=True)
def backup_scheduler(env_file: EnvFile = DEFAULT_ENV) -> None:
    """Take backups on BACKUP_SCHEDULE forever (run by native mode's supervisor)."""
    from ..backups.operations import backup_now
    from ..backups.schedule import run_forever

    s, pg, retention, _ = _backup_context(env_file, "native")
    run_forever(s.backup_schedule, lambda: [backup_now(pg, s.backup_dir, s.postgres_db, retention)])
