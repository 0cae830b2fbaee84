"""`prefectstack bench`: the figures of a running stack, in one bounded run.

1. API throughput and latency per request kind, through the LB and against one
   replica (http_load); 2. flow-run lifecycle throughput with the visibility probe
   alongside (lifecycle); 3. event-persist lag and consumer-group backlog during
   that load (pipeline); 4. with compare_stock, the lifecycle and probe again
   against a stock single Prefect server (stock). The bench's flow runs are
   deleted afterwards (one flow, `prefectstack-bench`, cascades to its runs).
"""

from __future__ import annotations

import os
import platform
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from ..backups.pg import PgClient
from . import http_load, lifecycle, pipeline
from .errors import BenchError
from .stock import stock_server

BACKLOG_MARGIN_S = 30  # Prometheus scrapes the exporter every 30 s


@dataclass(frozen=True)
class Target:
    mode: str
    lb_url: str  # .../api through the load balancer
    replica_url: str  # .../api of one replica, bypassing the load balancer
    client_env: dict[str, str]  # as `prefectstack client-config` gives it
    pg: PgClient
    db: str
    prometheus_url: str
    layout: dict[str, int]  # API replicas, services processes


@dataclass(frozen=True)
class Options:
    http: http_load.Load = field(default_factory=http_load.Load)
    concurrency: lifecycle.Concurrency = field(default_factory=lifecycle.Concurrency)
    compare_stock: bool = False


def _http(target: Target) -> httpx.Client:
    user, _, password = target.client_env["PREFECT_API_AUTH_STRING"].partition(":")
    verify = target.client_env.get("PREFECT_API_SSL_CERT_FILE", True)  # the stack's CA, with TLS
    return httpx.Client(base_url=target.lb_url, auth=(user, password), timeout=30, verify=verify)


def machine(target: Target) -> dict:
    with open("/proc/meminfo") as meminfo:
        kb = int(meminfo.readline().split()[1])
    from prefect import __version__ as prefect_version

    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "mode": target.mode,
        "prefect": prefect_version,
        **target.layout,
    }


def run(target: Target, options: Options, say) -> dict:
    with _http(target) as api:
        try:
            api.get("/health").raise_for_status()
        except httpx.HTTPError as exc:
            raise BenchError(f"the stack's API does not answer at {target.lb_url}: {exc}") from None
        flow_id = api.post("/flows/", json={"name": lifecycle.FLOW}).json()["id"]
        try:
            figures: dict = {"machine": machine(target)}
            auth = target.client_env["PREFECT_API_AUTH_STRING"]
            figures["http"] = http_load.compare(
                target.lb_url, target.replica_url, auth, flow_id, options.http, say
            )
            start = datetime.now(UTC)
            figures.update(lifecycle.run(target.client_env, options.concurrency, say))
            end = datetime.now(UTC)
            say("event pipeline: persist lag from PostgreSQL, backlog from Prometheus")
            figures["pipeline"] = {
                "event_persist_lag": pipeline.persist_lag(target.pg, target.db, start, end),
                "backlog": pipeline.backlog(
                    target.prometheus_url, int((end - start).total_seconds()) + BACKLOG_MARGIN_S
                ),
            }
            if options.compare_stock:
                figures["stock"] = _stock(figures, options, say)
        finally:
            say("deleting the bench's flow runs")
            api.delete(f"/flows/{flow_id}")
    return figures


def _stock(figures: dict, options: Options, say) -> dict:
    with tempfile.TemporaryDirectory(prefix="prefectstack-bench-stock-") as tmp:
        say("starting a stock Prefect server (SQLite, one process) on a free port")
        with stock_server(Path(tmp) / "server") as url:
            stock = lifecycle.run({"PREFECT_API_URL": url}, options.concurrency, say)
    ours, theirs = figures["lifecycle"]["runs_per_s"], stock["lifecycle"]["runs_per_s"]
    stock["stack_over_stock_lifecycle"] = round(ours / theirs, 2) if theirs else None
    return stock
