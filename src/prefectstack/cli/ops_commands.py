"""Operations: doctor, failover drills, the Prefect exporter."""

from __future__ import annotations

import json
import os
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
    native,
    settings_from,
)


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
    from ..operations.doctor import Targets, run

    check_mode(mode)
    if from_env:
        rows = run(Targets.from_container_env(dict(os.environ)))
    elif mode == "compose":
        from ..compose import operations as compose_ops

        rows = compose_guard(lambda: compose_ops.doctor(settings_from(env_file)))
    else:
        rows = run(Targets.native(settings_from(env_file)))
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


@app.command()
def drill(
    components: Annotated[
        list[str] | None,
        typer.Argument(
            help="Components to kill, in turn: api, services, redis, postgres, nginx, "
            "monitoring (default: all)."
        ),
    ] = None,
    env_file: EnvFile = DEFAULT_ENV,
    mode: Mode = "native",
    clients: Annotated[int, typer.Option(min=1, max=20, help="Concurrent clients.")] = 3,
    runs: Annotated[int, typer.Option(min=1, max=500, help="Flow runs per client.")] = 10,
    duration: Annotated[
        float, typer.Option(min=10, max=3600, help="Seconds after which no client starts a run.")
    ] = 120.0,
    recovery_timeout: Annotated[
        float, typer.Option(min=10, help="Seconds a killed component gets to be healthy again.")
    ] = 180.0,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """SIGKILL each chosen component under a bounded workload of flow runs and count
    what was lost, duplicated or stuck; exit 1 if anything was."""
    from ..client_config import client_values
    from ..operations import drill as drilling
    from ..operations.drill_targets import COMPONENTS, ComposeTarget, DrillError, NativeTarget

    check_mode(mode)
    chosen = components or list(COMPONENTS)
    unknown = [c for c in chosen if c not in COMPONENTS]
    if unknown:
        raise fail([f"unknown component {', '.join(unknown)}: use {', '.join(COMPONENTS)}"])
    s = settings_from(env_file)
    if mode == "compose":
        from ..compose import operations as compose_ops

        target = ComposeTarget(compose_guard(lambda: compose_ops.base(s)))
    else:
        target = NativeTarget(native(env_file))
    api = drilling.Api(client_values(s, f"{s.lb_url}/api"))
    workload = drilling.Workload(clients, runs, duration, recovery_timeout)
    try:
        outcomes = drilling.run(target, api, chosen, workload, lambda line: err.print(line))
    except DrillError as exc:
        raise fail([str(exc)]) from None
    if as_json:
        print(json.dumps([o.as_dict() for o in outcomes], indent=2))
    else:
        console.print(_drill_table(outcomes))
        for o in outcomes:
            for note in dict.fromkeys(o.notes):
                console.print(f"[yellow]{o.component}:[/yellow] {note}", highlight=False)
    if not all(o.passed for o in outcomes) or len(outcomes) < len(chosen):
        raise typer.Exit(1)


def _drill_table(outcomes) -> Table:
    """One column per component, one row per count: it fits a terminal."""
    from ..operations.drill import LOSSES

    table = Table("", *(o.component for o in outcomes))
    table.add_row("flow runs", *(str(o.runs) for o in outcomes))
    for key in LOSSES:
        values = [getattr(o, key) for o in outcomes]
        table.add_row(key.replace("_", " "), *(f"[red]{v}[/red]" if v else "0" for v in values))
    table.add_row(
        "healthy again after",
        *(f"{o.recovery_s:.1f} s" if o.recovery_s is not None else "[red]never[/red]"
          for o in outcomes),
    )  # fmt: skip
    table.add_row("worst run", *(f"{o.worst_run_s:.1f} s" for o in outcomes))
    table.add_row(
        "result", *("[green]pass[/green]" if o.passed else "[red]FAIL[/red]" for o in outcomes)
    )
    return table


@app.command()
def exporter(
    address: Annotated[str, typer.Option(envvar="PREFECTSTACK_EXPORTER_ADDRESS")] = "0.0.0.0",
    port: Annotated[int, typer.Option(envvar="PREFECTSTACK_EXPORTER_PORT")] = 9560,
) -> None:
    """Serve Prefect metrics for Prometheus (configured by PREFECT_* environment variables)."""
    from ..monitoring.exporter import Config, serve

    serve(address, port, Config.from_env())
