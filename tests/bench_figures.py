"""What `prefectstack bench --json` must report, for the tests of both modes:
every figure present and of its kind (its values are the benchmark's business)."""

from __future__ import annotations

import json

HTTP_ROW = {"requests_per_s", "requests", "failed", "p50_ms", "p95_ms", "p99_ms", "max_ms"}
LIFECYCLE = {"clients", "flow_runs", "completed", "failures", "wall_s", "runs_per_s",
             "run_p50_s", "run_p95_s"}  # fmt: skip
VISIBLE = {"samples", "not_visible", "p50_ms", "p95_ms"}


def run_short_bench(stack, *extra: str) -> dict:
    # A window must see requests complete, or the bench rightly refuses the figure.
    # Connections that start together against one replica are served interleaved
    # and finish together, after about (connections x a request's cost): 32
    # flow-run creations have taken over 2 s under the suite's load, 8 take a
    # quarter of that.
    out = stack.cli(
        "bench", "--duration", "4", "--connections", "8",
        "--clients", "1", "--runs", "2", "--json", *extra,
    ).stdout  # fmt: skip
    return json.loads(out)


def assert_complete(figures: dict, stock: bool) -> None:
    assert {"cpus", "memory_gb", "mode", "prefect", "api_replicas"} <= set(figures["machine"])
    assert set(figures["http"]) == {"health", "flow_runs_filter", "flow_run_create"}
    for name, row in figures["http"].items():
        for where in ("lb", "one_replica"):
            assert set(row[where]) == HTTP_ROW, (name, where)
            assert row[where]["requests"] > 0 and row[where]["failed"] == 0, (name, where, row)
        assert row["lb_over_one_replica"] > 0
    sides = [figures, *([figures["stock"]] if stock else [])]
    for side in sides:
        life = side["lifecycle"]
        assert set(life) == LIFECYCLE
        assert life["completed"] == life["flow_runs"] == 2 and life["failures"] == 0, life
        assert life["runs_per_s"] > 0
        for kind in ("task_run", "event"):
            seen = side["visibility"][kind]
            assert set(seen) == VISIBLE
            assert seen["samples"] >= 1 and seen["not_visible"] == 0, (kind, seen)
            assert seen["p50_ms"] is not None and seen["p95_ms"] >= seen["p50_ms"]
    lag = figures["pipeline"]["event_persist_lag"]
    assert lag["events"] > 0 and lag["p95_s"] >= lag["p50_s"] >= 0
    assert set(figures["pipeline"]["backlog"]) == {
        "oldest_undelivered_age_s_max", "oldest_pending_age_s_max"}  # fmt: skip
    assert ("stock" in figures) == stock
    if stock:
        assert figures["stock"]["stack_over_stock_lifecycle"] > 0


def assert_bench_runs_deleted(stack) -> None:
    with stack.client() as client:
        flows = client.post(
            "/flows/filter", json={"flows": {"name": {"any_": ["prefectstack-bench"]}}}
        )
        assert flows.json() == [], "the bench left its flow runs behind"
