"""API throughput and latency with wrk: each request kind through the load
balancer and against one replica directly, back to back in the same run.

wrk (Debian package) over a Python load library: one C process with an event
loop per thread drives 32 keep-alive connections from 2 cores with little CPU,
so what is measured is the stack, not the load generator; a Python client on the
same 2 cores would take a core from the replicas it is measuring.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import BenchError

SCRIPT = Path(__file__).with_name("wrk_summary.lua")


@dataclass(frozen=True)
class Request:
    name: str
    method: str
    path: str  # under /api
    body: str | None = None


def requests(flow_id: str) -> list[Request]:
    return [
        Request("health", "GET", "/health"),
        Request("flow_runs_filter", "POST", "/flow_runs/filter", json.dumps({"limit": 10})),
        Request(
            "flow_run_create",
            "POST",
            "/flow_runs/",
            json.dumps({"flow_id": flow_id, "name": "prefectstack-bench", "tags": ["bench"]}),
        ),
    ]


@dataclass(frozen=True)
class Load:
    duration_s: int = 10
    connections: int = 32
    threads: int = 2


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise BenchError("wrk is not installed (Debian package `wrk`; scripts/install_native.sh)")
    return found


def measure(base_url: str, auth_string: str, request: Request, load: Load) -> dict:
    """One wrk run: requests/s, latency percentiles (ms), and every failed request."""
    token = base64.b64encode(auth_string.encode()).decode()
    env = {
        **os.environ,
        "BENCH_METHOD": request.method,
        "BENCH_AUTHORIZATION": f"Basic {token}",
    }
    if request.body is not None:
        env["BENCH_BODY"] = request.body
    argv = [
        wrk_binary(),
        f"-t{load.threads}",
        f"-c{load.connections}",
        f"-d{load.duration_s}s",
        "--timeout", "10s",
        "-s", str(SCRIPT),
        base_url.rstrip("/") + request.path,
    ]  # fmt: skip
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=load.duration_s + 60, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise BenchError(f"wrk {request.name} on {base_url}: {done.stderr.strip() or done.stdout}")
    raw = json.loads(lines[-1])
    if raw["requests"] == 0:  # wrk counts only what completed: 0 req/s would be a false figure
        raise BenchError(
            f"no {request.name} request on {base_url} completed within the {load.duration_s} s"
            " window (each took longer); run with a longer --duration or fewer --connections"
        )
    seconds = raw["duration_us"] / 1e6
    return {
        "requests_per_s": round(raw["requests"] / seconds, 1),
        "requests": raw["requests"],
        "failed": raw["non_2xx"] + raw["socket_errors"],
        **{f"{q}_ms": round(raw[f"{q}_us"] / 1000, 1) for q in ("p50", "p95", "p99", "max")},
    }


def compare(lb_url: str, replica_url: str, auth_string: str, flow_id: str, load: Load, say):
    """Every request kind through the LB and against one replica; the ratio of
    their throughputs is what the replicas behind the LB buy."""
    figures = {}
    for request in requests(flow_id):
        row = {}
        for where, url in (("lb", lb_url), ("one_replica", replica_url)):
            say(f"http {request.name} via {where}: {load.duration_s}s, {load.connections} conns")
            row[where] = measure(url, auth_string, request, load)
        single = row["one_replica"]["requests_per_s"]
        row["lb_over_one_replica"] = (
            round(row["lb"]["requests_per_s"] / single, 2) if single else None
        )
        figures[request.name] = row
    return figures
