"""Backups: backup, backup list, backup verify, restore, and the native scheduler."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .app import app
from .common import (
    DEFAULT_ENV,
    EnvFile,
    Mode,
    compose_guard,
    console,
    err,
    fail,
    guarded,
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
def backup(ctx: typer.Context, env_file: EnvFile = DEFAULT_ENV, mode: Mode = "native") -> None:
    """Take a backup now (without a subcommand)."""
    if ctx.invoked_subcommand is not None:
        return
    from ..backups.operations import backup_now

    s, pg, retention, _ = _backup_context(env_file, mode)
    if mode == "compose":
        from ..compose import operations as compose_ops

        path = _backup_guard(lambda: compose_ops.backup_now(s))
    else:
        path = _backup_guard(lambda: backup_now(pg, s.backup_dir, s.postgres_db, retention))
    console.print(f"backup written: {path} ({path.stat().st_size} bytes)")


@backup_app.command("list")
def backup_list(
    env_file: EnvFile = DEFAULT_ENV,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List the backups, newest last, per folder."""
    from ..backups.layout import listing

    s = settings_from(env_file)
    files = listing(s.backup_dir, s.postgres_db)
    if as_json:
        print(json.dumps([f.as_dict() for f in files], indent=2))
        return
    if not files:
        console.print(f"no backups in {s.backup_dir}")
        return
    table = Table("folder", "file", "size", "created")
    for f in files:
        row = f.as_dict()
        table.add_row(f.folder, f.path.name, f"{f.size / 1e6:.1f} MB", row["created"])
    console.print(table)


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
    file: Path,
    env_file: EnvFile = DEFAULT_ENV,
    mode: Mode = "native",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Replace the database with FILE (a backup of the current one is taken first)."""
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


@app.command("backup-scheduler", hidden=True)
def backup_scheduler(env_file: EnvFile = DEFAULT_ENV) -> None:
    """Take backups on BACKUP_SCHEDULE forever (run by native mode's supervisor)."""
    from ..backups.operations import backup_now
    from ..backups.schedule import run_forever

    s, pg, retention, _ = _backup_context(env_file, "native")
    run_forever(s.backup_schedule, lambda: [backup_now(pg, s.backup_dir, s.postgres_db, retention)])
