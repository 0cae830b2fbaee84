"""Flow-run lifecycle throughput at a given concurrency, with the visibility probe
running alongside: CLIENTS processes run RUNS flow runs each (3 tasks and a log
line: the drill's workload), every run through create -> running -> completed."""

from __future__ import annotations

import math
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..operations.client_process import finish, spawn

WORKLOAD = "prefectstack.operations.drill_workload"
PROBE = "prefectstack.bench.probe"
FLOW = "prefectstack-bench"
RUN_DEADLINE_S = 300  # no client starts a run after this
COLLECT_TIMEOUT_S = 600
# The probe's sample in flight: a flow run, then up to two of its 30 s polls.
PROBE_FINISH_S = 120


@dataclass(frozen=True)
class Concurrency:
    clients: int = 4
    runs: int = 10  # per client


def percentile(values: list[float], q: float) -> float | None:
    """Nearest rank: with few samples, p95 is the worst but one, not an interpolation."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def run(client_env: dict[str, str], load: Concurrency, say) -> dict:
    tag = f"bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="prefectstack-bench-") as tmp:
        say(f"lifecycle: {load.clients} clients x {load.runs} flow runs, and the probe")
        stop_probe = Path(tmp) / "stop-probe"
        probe_args = [str(stop_probe), str(RUN_DEADLINE_S), FLOW]
        probe = spawn(PROBE, probe_args, Path(tmp) / "probe", client_env)
        clients = [
            spawn(
                WORKLOAD,
                # One more run than counted: each client's first pays for imports,
                # connections and the flow's registration.
                [tag, str(i), str(load.runs + 1), str(RUN_DEADLINE_S), FLOW],
                Path(tmp) / f"client-{i}",
                client_env,
            )
            for i in range(load.clients)
        ]
        rows = []
        for proc, log in clients:
            rows += [r for r in _finish(proc, log, COLLECT_TIMEOUT_S) if not _warm_up(r)]
        stop_probe.touch()  # the load is over: so is the probe, after its sample in flight
        samples = _finish(*probe, PROBE_FINISH_S)
    return {"lifecycle": _lifecycle(rows, load), "visibility": _visibility(samples)}


def _warm_up(row: dict) -> bool:
    return row.get("marker", "").endswith("/0")


def _finish(proc: subprocess.Popen, log: Path, timeout: float) -> list[dict]:
    rows, error = finish(proc, log, timeout)
    if error and not rows:
        rows.append({"state": "CLIENT_ERROR", "error": error})
    return rows


def _lifecycle(rows: list[dict], load: Concurrency) -> dict:
    done = [r for r in rows if r.get("state") == "COMPLETED"]
    timed = [r for r in rows if "started" in r]
    window = (
        max(r["started"] + r["seconds"] for r in timed) - min(r["started"] for r in timed)
        if timed
        else 0.0
    )
    seconds = [r["seconds"] for r in done]
    return {
        "clients": load.clients,
        "flow_runs": len(rows),
        "completed": len(done),
        "failures": len(rows) - len(done),
        "wall_s": round(window, 2),
        "runs_per_s": round(len(done) / window, 2) if window else 0.0,
        "run_p50_s": percentile(seconds, 0.5),
        "run_p95_s": percentile(seconds, 0.95),
    }


def _visibility(samples: list[dict]) -> dict:
    figures = {}
    for kind in ("task_run", "event"):
        values = [s[f"{kind}_ms"] for s in samples if s.get(f"{kind}_ms") is not None]
        figures[kind] = {
            "samples": len(values),
            "not_visible": sum(s.get(f"{kind}_ms") is None for s in samples),
            "p50_ms": percentile(values, 0.5),
            "p95_ms": percentile(values, 0.95),
        }
    return figures
