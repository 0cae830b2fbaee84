"""The `prefectstack` command line (Typer: typed options, help and completion)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .settings import SettingsError, StackSettings, load_settings

app = typer.Typer(
    help="Run and operate the self-hosted Prefect stack.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

EnvFile = Annotated[
    Path,
    typer.Option(
        "--env-file",
        "-e",
        envvar="PREFECTSTACK_ENV_FILE",
        help="The stack's .env (every setting; relative paths in it are relative to its folder).",
    ),
]
DEFAULT_ENV = Path(".env")
Mode = Annotated[
    str,
    typer.Option(
        "--mode",
        envvar="PREFECTSTACK_MODE",
        help="native (this machine's processes) or compose (through docker compose).",
    ),
]


def _check_mode(mode: str) -> None:
    if mode not in ("native", "compose"):
        raise fail([f"--mode {mode}: use native or compose"])


def fail(problems: list[str], code: int = 1) -> typer.Exit:
    for line in problems:
        err.print(f"[red]error:[/red] {line}", highlight=False)
    return typer.Exit(code)


def settings_from(env_file: Path) -> StackSettings:
    try:
        return load_settings(env_file)
    except SettingsError as exc:
        err.print(f"[red]invalid configuration in {exc.source}[/red]")
        raise fail(exc.problems) from None


def native(env_file: Path):
    from .native.stack import NativeStack
    from .native.tools import MissingTools

    settings = settings_from(env_file)

    def report(service: str, message: str) -> None:
        # Progress goes to stderr (as docker compose does), results to stdout.
        err.print(f"  [bold]{service:<18}[/bold] {message}", highlight=False)

    stack = NativeStack(settings, report)
    try:
        stack.tools  # noqa: B018 - locate binaries before anything starts
    except MissingTools as exc:
        raise fail(exc.problems) from None
    return stack


def guarded(action):
    from .native.stack import StackError
    from .native.supervisor import SupervisorError

    try:
        return action()
    except StackError as exc:
        raise fail(exc.problems) from None
    except SupervisorError as exc:
        raise fail([str(exc)]) from None


@app.command()
def init(
    env_file: EnvFile = DEFAULT_ENV,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing file, keeping a timestamped copy.")
    ] = False,
) -> None:
    """Create .env from .env.example with a strong random value for every secret."""
    from .init_env import InitError, create_env
    from .paths import REPO_ROOT

    try:
        result = create_env(REPO_ROOT / ".env.example", env_file, force=force)
    except InitError as exc:
        raise fail([str(exc)]) from None
    if result.backup:
        console.print(f"kept the previous file as {result.backup}")
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    console.print(
        f"wrote {result.path} (mode 600) with generated secrets: {', '.join(result.generated)}.\n"
        f"Your credentials are in that file; the Prefect UI login is "
        f"PREFECT_SERVER_API_AUTH_STRING (user:password)."
    )


@app.command()
def check(env_file: EnvFile = DEFAULT_ENV) -> None:
    """Validate a configuration without starting anything; exit 1 on any error."""
    from .checks import check_env_file, has_errors

    findings = check_env_file(env_file)
    colours = {"error": "red", "warning": "yellow", "info": "cyan"}
    for finding in findings:
        colour = colours[finding.level]
        console.print(
            f"[{colour}]{finding.level}[/{colour}]: {finding.key}: {finding.message}",
            highlight=False,
        )
    if has_errors(findings):
        errors = sum(f.level == "error" for f in findings)
        console.print(f"[red]{errors} error(s)[/red] in {env_file}")
        raise typer.Exit(1)
    console.print(f"[green]{env_file} is valid[/green]")


@app.command()
def up(env_file: EnvFile = DEFAULT_ENV) -> None:
    """Start the whole stack in the background; return when every service is healthy."""
    stack = native(env_file)
    started = time.monotonic()
    err.print(f"Starting the native stack in {stack.layout.root}")
    notices = guarded(stack.up)
    for notice in notices:
        console.print(f"[yellow]notice:[/yellow] {notice}")
    s = stack.s
    console.print(
        f"[green]Stack is up[/green] in {time.monotonic() - started:.0f}s. "
        f"Prefect UI: {s.lb_url}  (log in with PREFECT_SERVER_API_AUTH_STRING from {env_file})"
    )


@app.command()
def down(env_file: EnvFile = DEFAULT_ENV) -> None:
    """Stop every service in reverse order (SIGTERM, then SIGKILL after a grace period)."""
    stack = native(env_file)
    guarded(stack.down)
    console.print("Stack is down; data stays in " + str(stack.layout.root))


@app.command()
def status(
    env_file: EnvFile = DEFAULT_ENV,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Each service's process, port, health and restart count. Exit 1 if any is unhealthy."""
    stack = native(env_file)
    rows = guarded(stack.status)
    if as_json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        table = Table("service", "pid", "port", "health", "restarts", "uptime", "detail")
        for r in rows:
            colour = "green" if r.healthy else "red"
            table.add_row(
                r.name,
                str(r.pid or "-"),
                str(r.port or "-"),
                f"[{colour}]{r.health}[/{colour}]",
                str(r.restarts),
                _duration(r.uptime_s),
                r.detail,
            )
        console.print(table)
    if not all(r.healthy for r in rows):
        raise typer.Exit(1)


@app.command()
def doctor(
    env_file: EnvFile = DEFAULT_ENV,
    mode: Mode = "native",
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    from_env: Annotated[
        bool, typer.Option("--from-env", hidden=True, help="Inside a compose container.")
    ] = False,
) -> None:
    """Live checks of the running stack (pass / warn / fail); exit 1 on any failure."""
    from .doctor import Targets, run

    _check_mode(mode)
    if from_env:
        rows = run(Targets.from_container_env(dict(os.environ)))
    elif mode == "compose":
        from . import compose_mode

        rows = _compose_guard(lambda: compose_mode.doctor(settings_from(env_file)))
    else:
        stack = native(env_file)
        rows = run(Targets.native(stack.s, stack.service("services").probe))
    if as_json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        colours = {"pass": "green", "warn": "yellow", "fail": "red"}
        table = Table("check", "result", "detail")
        for r in rows:
            table.add_row(
                r.name, f"[{colours[r.status]}]{r.status}[/{colours[r.status]}]", r.detail
            )
        console.print(table)
    if any(r.status == "fail" for r in rows):
        raise typer.Exit(1)


def _compose_guard(action):
    from .compose_mode import ComposeError

    try:
        return action()
    except ComposeError as exc:
        raise fail([str(exc)]) from None


@app.command()
def logs(
    service: Annotated[str | None, typer.Argument(help="One service, e.g. api-2.")] = None,
    env_file: EnvFile = DEFAULT_ENV,
    follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n")] = 50,
) -> None:
    """Show (or follow) the logs of one or all services."""
    stack = native(env_file)
    files = guarded(lambda: stack.log_files(service))
    if not files:
        raise fail(["no logs yet: start the stack with `prefectstack up`"])
    args = ["tail", "-n", str(lines)] + (["-F"] if follow else []) + [str(f) for f in files]
    sys.stdout.flush()
    os.execvp("tail", args)


@app.command()
def restart(service: str, env_file: EnvFile = DEFAULT_ENV) -> None:
    """Restart one service and wait until it is healthy again."""
    stack = native(env_file)
    guarded(lambda: stack.restart(service))


@app.command()
def stop(service: str, env_file: EnvFile = DEFAULT_ENV) -> None:
    """Stop one service and keep it down (until `restart` or `up`)."""
    stack = native(env_file)
    guarded(lambda: stack.stop(service))
    console.print(f"{service} stopped")


@app.command()
def kill(service: str, env_file: EnvFile = DEFAULT_ENV) -> None:
    """SIGKILL one service's processes, as a crash would (failover drill).
    The supervisor restarts it."""
    stack = native(env_file)
    pid = guarded(lambda: stack.kill(service))
    console.print(f"sent SIGKILL to {service} (pid {pid}); the supervisor restarts it")


backup_app = typer.Typer(
    help="PostgreSQL backups (the compose pgbackups layout: last/ daily/ weekly/ monthly/).",
    invoke_without_command=True,
)
app.add_typer(backup_app, name="backup")


def _backup_context(env_file: Path, mode: str):
    """(settings, PostgreSQL client, retention, native stack or None) for a mode."""
    from .backups.layout import Retention
    from .backups.pg import NativePg

    _check_mode(mode)
    if mode == "compose":
        from . import compose_mode

        s = settings_from(env_file)
        client = _compose_guard(lambda: compose_mode.pg(s))
        stack = None
    else:
        stack = native(env_file)
        s = stack.s
        client = NativePg(
            stack.tools.pg_bindir,
            host="127.0.0.1",
            port=s.postgres_port,
            user=s.postgres_user,
            password=s.postgres_password.get_secret_value(),
        )
    retention = Retention(s.backup_keep_days, s.backup_keep_weeks, s.backup_keep_months)
    return s, client, retention, stack


def _backup_guard(action):
    from .backups.operations import BackupError
    from .backups.pg import PgError
    from .compose_mode import ComposeError

    try:
        return guarded(action)
    except (BackupError, PgError, ComposeError) as exc:
        raise fail([str(exc)]) from None


@backup_app.callback()
def backup(ctx: typer.Context, env_file: EnvFile = DEFAULT_ENV, mode: Mode = "native") -> None:
    """Take a backup now (without a subcommand)."""
    if ctx.invoked_subcommand is not None:
        return
    from .backups.operations import backup_now

    s, pg, retention, _ = _backup_context(env_file, mode)
    if mode == "compose":
        from . import compose_mode

        path = _backup_guard(lambda: compose_mode.backup_now(s))
    else:
        path = _backup_guard(lambda: backup_now(pg, s.backup_dir, s.postgres_db, retention))
    console.print(f"backup written: {path} ({path.stat().st_size} bytes)")


@backup_app.command("list")
def backup_list(
    env_file: EnvFile = DEFAULT_ENV,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List the backups, newest last, per folder."""
    from .backups.layout import listing

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
    from .backups.operations import verify

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
    from .backups.operations import restore as do_restore

    s, pg, retention, stack = _backup_context(env_file, mode)
    if not file.is_file():
        raise fail([f"{file}: no such file; `prefectstack backup list` shows the backups"])
    if stack is None:
        from .compose_mode import ComposeControl

        control = _compose_guard(lambda: ComposeControl(s))
    else:
        from .native.control import NativeControl

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


bench_app = typer.Typer(help="Benchmarks that print figures.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("exporter")
def bench_exporter(
    runs: Annotated[int, typer.Option(help="Flow runs to put in the database.")] = 100_000,
    scrapes: Annotated[int, typer.Option(help="Scrapes to time.")] = 20,
) -> None:
    """Time one scrape of the Prefect exporter with RUNS flow runs in the database
    (on a throwaway native stack; the target is under 250 ms)."""
    from .bench import exporter as run_bench

    figures = guarded(lambda: run_bench(runs, scrapes, lambda line: err.print(line)))
    console.print(
        f"exporter scrape with {figures['flow_runs']} flow runs in the database "
        f"({figures['scrapes']} scrapes): p50 {figures['p50_ms']:.0f} ms, "
        f"p95 {figures['p95_ms']:.0f} ms, max {figures['max_ms']:.0f} ms "
        f"(target < 250 ms); flow runs reported: {figures['flow_runs_reported']:.0f}"
    )


@app.command("backup-scheduler", hidden=True)
def backup_scheduler(env_file: EnvFile = DEFAULT_ENV) -> None:
    """Take backups on BACKUP_SCHEDULE forever (run by native mode's supervisor)."""
    from datetime import UTC, datetime

    from .backups.operations import BackupError, backup_now
    from .backups.schedule import next_run

    s, pg, retention, _ = _backup_context(env_file, "native")
    while True:
        due = next_run(s.backup_schedule, datetime.now(UTC))
        print(f"next backup at {due.isoformat(timespec='seconds')}", flush=True)
        while (wait := (due - datetime.now(UTC)).total_seconds()) > 0:
            time.sleep(min(wait, 30))
        try:
            path = backup_now(pg, s.backup_dir, s.postgres_db, retention)
            print(f"scheduled backup written: {path}", flush=True)
        except BackupError as exc:
            print(f"scheduled backup FAILED: {exc}", flush=True)


@app.command("client-config")
def client_config(
    env_file: EnvFile = DEFAULT_ENV,
    fmt: Annotated[
        str, typer.Option("--format", help="env (shell exports) or toml (prefect.toml).")
    ] = "env",
    profile: Annotated[
        str | None, typer.Option(help="Write a Prefect profile of this name instead.")
    ] = None,
    activate: Annotated[bool, typer.Option(help="Make the written profile the active one.")] = True,
    url: Annotated[
        str | None, typer.Option(help="API URL clients use (default: PREFECT_UI_API_URL).")
    ] = None,
) -> None:
    """Settings for a client machine: API URL of the load balancer and the auth string."""
    from .client_config import as_env, as_toml, client_values, write_profile

    values = client_values(settings_from(env_file), url)
    if profile:
        write_profile(profile, values, activate=activate)
        state = " and made it active" if activate else ""
        err.print(f"wrote Prefect profile '{profile}'{state}")
    elif fmt == "env":
        print(as_env(values), end="")
    elif fmt == "toml":
        print(as_toml(values), end="")
    else:
        raise fail([f"--format {fmt}: use env or toml"])


@app.command()
def exporter(
    address: Annotated[str, typer.Option(envvar="PREFECTSTACK_EXPORTER_ADDRESS")] = "0.0.0.0",
    port: Annotated[int, typer.Option(envvar="PREFECTSTACK_EXPORTER_PORT")] = 9560,
) -> None:
    """Serve Prefect metrics for Prometheus (configured by PREFECT_* environment variables)."""
    from .exporter import Config, serve

    serve(address, port, Config.from_env())


@app.command(hidden=True)
def generate() -> None:
    """Rewrite the compose deployment's rendered configs (deploy/nginx/compose.conf, ...)."""
    from .generated import write_all

    for path in write_all():
        console.print(f"wrote {path}")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
