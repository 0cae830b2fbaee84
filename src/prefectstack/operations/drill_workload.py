"""One workload client of the drill and the benchmark: flow runs with tasks and a
log line, one after another, through the load balancer, until COUNT are done,
DEADLINE seconds have passed, or one run started after the file named by
$PREFECTSTACK_DRILL_STOP_FILE appeared has ended.

Prints one JSON object per run as it ends (id, state, start time, seconds, error,
and the marker its log line carries), so the caller reads every outcome even of a
client it had to stop. Errors are reported, not raised: a client-visible error is
one of the things a drill counts.
Usage: python -m prefectstack.operations.drill_workload TAG CLIENT COUNT DEADLINE [FLOW]
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

from prefect import flow, get_run_logger, tags, task

TASKS = 3
LOG_PREFIX = "drill-log"
STOP_FILE_ENV = "PREFECTSTACK_DRILL_STOP_FILE"


@task
def step(i: int) -> int:
    return i + 1


@flow(name="prefectstack-drill")
def drill_flow(marker: str) -> int:
    get_run_logger().info("%s %s", LOG_PREFIX, marker)
    return sum(step(i) for i in range(TASKS))


def main() -> None:
    tag, client, count, deadline = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    run_flow = drill_flow.with_options(name=sys.argv[5]) if len(sys.argv) > 5 else drill_flow
    stop_at = time.monotonic() + deadline
    stop_file = os.environ.get(STOP_FILE_ENV)
    with tags(tag):
        for n in range(count):
            if time.monotonic() > stop_at:
                break
            last = bool(stop_file) and os.path.exists(stop_file)
            started, wall = time.monotonic(), time.time()
            marker = f"{tag}/{client}/{n}"
            row: dict = {"id": None, "state": "CLIENT_ERROR", "error": None, "marker": marker}
            row["started"] = wall
            try:
                state = run_flow(marker, return_state=True)
                row.update(id=str(state.state_details.flow_run_id), state=state.type.value)
            except Exception:
                row["error"] = traceback.format_exc(limit=3)
            row["seconds"] = round(time.monotonic() - started, 3)
            print(json.dumps(row), flush=True)
            if last:
                break


if __name__ == "__main__":
    main()
