"""Operations: doctor, the Prefect exporter, benchmarks."""

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
    guarded,
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
    from ..doctor import Targets, run

    check_mode(mode)
    if from_env:
        rows = run(Targets.from_container_env(dict(os.environ)))
    elif mode == "compose":
        from ..compose import operations as compose_ops

        rows = compose_guard(lambda: compose_ops.doctor(settings_from(env_file)))
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


bench_app = typer.Typer(help="Benchmarks that print figures.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("exporter")
def bench_exporter(
    runs: Annotated[int, typer.Option(help="Flow runs to put in the database.")] = 100_000,
    scrapes: Annotated[int, typer.Option(help="Scrapes to time.")] = 20,
) -> None:
    """Time one scrape of the Prefect exporter with RUNS flow runs in the database
    (on a throwaway native stack; the target is under 250 ms)."""
    from ..bench import exporter as run_bench

    figures = guarded(lambda: run_bench(runs, scrapes, lambda line: err.print(line)))
    console.print(
        f"exporter scrape with {figures['flow_runs']} flow runs in the database "
        f"({figures['scrapes']} scrapes): p50 {figures['p50_ms']:.0f} ms, "
        f"p95 {figures['p95_ms']:.0f} ms, max {figures['max_ms']:.0f} ms "
        f"(target < 250 ms); flow runs reported: {figures['flow_runs_reported']:.0f}"
    )


@app.command()
def exporter(
    address: Annotated[str, typer.Option(envvar="PREFECTSTACK_EXPORTER_ADDRESS")] = "0.0.0.0",
    port: Annotated[int, typer.Option(envvar="PREFECTSTACK_EXPORTER_PORT")] = 9560,
) -> None:
    """Serve Prefect metrics for Prometheus (configured by PREFECT_* environment variables)."""
    from ..exporter import Config, serve

    serve(address, port, Config.from_env())
