"""Stack lifecycle: up, down, status, logs, restart, stop, kill (native); rollout
and upgrade (both modes)."""

from __future__ import annotations

import json
import os
import sys
import time
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
    settings_from,
)


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
def rollout(env_file: EnvFile = DEFAULT_ENV, mode: Mode = "native") -> None:
    """Restart every API replica, then every background-services process, one at a
    time with the current configuration, each drained from nginx first: no request
    fails. Stops at a replica that does not become healthy (exit 1)."""
    check_mode(mode)
    say = lambda line: err.print(line, highlight=False)  # noqa: E731
    if mode == "compose":
        from ..compose import rollout as compose_rollout

        s = settings_from(env_file)
        rolled = compose_guard(lambda: compose_rollout.rollout(s, say))
        console.print(f"rolled out: {', '.join(rolled)}")
        return
    from ..native.rollout import rollout as roll

    stack = native(env_file)
    rolled = guarded(lambda: roll(stack, say))
    console.print(f"rolled out: {', '.join(rolled)}")


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


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


@app.command()
def upgrade(
    to: Annotated[
        str | None,
        typer.Option("--to", help="The Prefect release (default: the one uv.lock bundles)."),
    ] = None,
    env_file: EnvFile = DEFAULT_ENV,
    mode: Mode = "native",
    with_downtime: Annotated[
        bool,
        typer.Option(
            help="Stop the API for the migration (for a migration the running "
            "release may not survive)."
        ),
    ] = False,
) -> None:
    """Move the stack to another Prefect release while it serves: check, prepare
    the release, back up, migrate, set PREFECT_VERSION in .env, roll out."""
    from ..releases import upgrade as upgrading
    from ..releases.versions import bundled

    check_mode(mode)
    s = settings_from(env_file)
    say = lambda line: err.print(line, highlight=False)  # noqa: E731
    try:
        plan = upgrading.validate(s, to or bundled())
        plan.with_downtime = with_downtime
        if mode == "compose":
            target = compose_guard(lambda: upgrading.ComposeTarget(s))
        else:
            target = upgrading.NativeTarget(native(env_file))
        rolled = guarded(lambda: upgrading.upgrade(s, plan, target, say))
    except upgrading.UpgradeError as exc:
        raise fail(exc.problems) from None
    console.print(f"upgraded to Prefect {plan.target}")
    if rolled:
        console.print(f"rolled out: {', '.join(rolled)}")
