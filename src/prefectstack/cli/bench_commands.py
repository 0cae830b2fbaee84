"""Benchmarks: `bench` (a running stack, either mode) and `bench exporter`."""

from __future__ import annotations

import json
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
)

bench_app = typer.Typer(
    help="Benchmarks that print figures (speed targets live here, not in tests).",
    invoke_without_command=True,
)
app.add_typer(bench_app, name="bench")


@bench_app.callback()
def bench(
    ctx: typer.Context,
    env_file: EnvFile = DEFAULT_ENV,
    mode: Mode = "native",
    duration: Annotated[
        int, typer.Option(min=1, max=300, help="Seconds of load per HTTP measurement.")
    ] = 10,
    connections: Annotated[
        int, typer.Option(min=1, max=512, help="Concurrent HTTP connections.")
    ] = 32,
    clients: Annotated[int, typer.Option(min=1, max=32, help="Concurrent flow-run clients.")] = 4,
    runs: Annotated[int, typer.Option(min=1, max=1000, help="Flow runs per client.")] = 10,
    compare_stock: Annotated[
        bool,
        typer.Option(
            "--compare-stock",
            help="Also run the lifecycle and probe against a stock Prefect server (SQLite).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Load the running stack and print its figures: API throughput through the
    load balancer vs one replica, flow-run lifecycle throughput, task-run and
    event visibility, event-persist lag and backlog (about 2 minutes by default)."""
    if ctx.invoked_subcommand is not None:
        return
    from ..bench import http_load, lifecycle
    from ..bench.errors import BenchError
    from ..bench.stack_bench import Options, Target, run
    from ..client_config import client_values
    from ..settings import _loopback_for

    s, pg, _ = postgres(env_file, mode)
    if mode == "compose":
        from ..compose import operations as compose_ops

        replica = compose_guard(lambda: compose_ops.replica_api_url(s))
    else:
        replica = f"http://127.0.0.1:{s.api_ports[0]}/api"
    target = Target(
        mode=mode,
        lb_url=f"{s.lb_url}/api",
        replica_url=replica,
        client_env=client_values(s, f"{s.lb_url}/api"),
        pg=pg,
        db=s.postgres_db,
        prometheus_url=f"http://{_loopback_for(s.bind_address)}:{s.prometheus_port}",
        layout={
            "api_replicas": s.prefect_api_replicas,
            "services_processes": s.prefect_services_replicas,
        },
    )
    options = Options(
        http=http_load.Load(duration, connections),
        concurrency=lifecycle.Concurrency(clients, runs),
        compare_stock=compare_stock,
    )
    try:
        figures = run(target, options, lambda line: err.print(line, highlight=False))
    except BenchError as exc:
        raise fail([str(exc)]) from None
    if as_json:
        print(json.dumps(figures, indent=2))
    else:
        for table in _tables(figures):
            console.print(table)


def _ms(value) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _tables(f: dict) -> list[Table]:
    m = f["machine"]
    http = Table(title=f"API ({m['cpus']} cores, {m['mode']}, {m['api_replicas']} replicas)")
    http.add_column("request", no_wrap=True)
    http.add_column("via", no_wrap=True)
    for name in ("req/s", "p50", "p95", "p99", "failed"):
        http.add_column(name, justify="right", no_wrap=True)
    for name, row in f["http"].items():
        for where in ("lb", "one_replica"):
            r = row[where]
            http.add_row(
                name, where.replace("_", " "), f"{r['requests_per_s']:.0f}", _ms(r["p50_ms"]),
                _ms(r["p95_ms"]), _ms(r["p99_ms"]), str(r["failed"]),
            )  # fmt: skip
        http.add_row("", "ratio", f"{row['lb_over_one_replica']}x", "", "", "", "")
    work = Table("figure", "stack", *(["stock"] if "stock" in f else []), title="Workload")
    sides = [f, *([f["stock"]] if "stock" in f else [])]
    life = [s["lifecycle"] for s in sides]
    vis = [s["visibility"] for s in sides]
    work.add_row("flow runs completed / failed",
                 *(f"{x['completed']} / {x['failures']}" for x in life))  # fmt: skip
    work.add_row("flow runs per second", *(f"{x['runs_per_s']:.2f}" for x in life))
    work.add_row("flow run p95", *(f"{x['run_p95_s'] or 0:.2f} s" for x in life))
    for kind in ("task_run", "event"):
        label = kind.replace("_", " ")
        work.add_row(f"{label} visible p50", *(_ms(x[kind]["p50_ms"]) for x in vis))
        work.add_row(f"{label} visible p95", *(_ms(x[kind]["p95_ms"]) for x in vis))
    lag = f["pipeline"]["event_persist_lag"]
    lag_text = f"{lag['p50_s']:.2f} s / {lag['p95_s']:.2f} s ({lag['events']} events)"
    work.add_row("event persist lag p50 / p95", lag_text)
    for key, value in f["pipeline"]["backlog"].items():
        work.add_row(key.replace("_", " "), "-" if value is None else f"{value:.1f}")
    if "stock" in f:
        work.add_row("lifecycle, stack / stock", f"{f['stock']['stack_over_stock_lifecycle']}x")
    return [http, work]


@bench_app.command("exporter")
def bench_exporter(
    runs: Annotated[int, typer.Option(help="Flow runs to put in the database.")] = 100_000,
    scrapes: Annotated[int, typer.Option(help="Scrapes to time.")] = 20,
) -> None:
    """Time one scrape of the Prefect exporter with RUNS flow runs in the database
    (on a throwaway native stack; the target is under 250 ms)."""
    from ..bench.exporter import run as run_bench

    figures = guarded(lambda: run_bench(runs, scrapes, lambda line: err.print(line)))
    console.print(
        f"exporter scrape with {figures['flow_runs']} flow runs in the database "
        f"({figures['scrapes']} scrapes): p50 {figures['p50_ms']:.0f} ms, "
        f"p95 {figures['p95_ms']:.0f} ms, max {figures['max_ms']:.0f} ms "
        f"(target < 250 ms); flow runs reported: {figures['flow_runs_reported']:.0f}"
    )
