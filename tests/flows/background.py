"""Background tasks as users run them: `serve MARKERS` is a task worker
(`task.serve()`); `submit N PAUSE` calls `.delay()` N times, PAUSE seconds apart,
and prints the task run ids as JSON. Every execution of the task leaves a file
named <task run id>.<uuid> in MARKERS, so a test can count executions per run.
Workers and submitters share result storage (PREFECT_LOCAL_STORAGE_PATH), where
the parameters of each run are kept."""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

from prefect import task
from prefect.runtime import task_run


@task
def record(markers: str, n: int) -> int:
    time.sleep(0.2)
    (Path(markers) / f"{task_run.id}.{uuid.uuid4().hex}").touch()
    return n


def main() -> None:
    mode = sys.argv[1]
    if mode == "serve":
        record.serve()
    elif mode == "submit":
        markers, count, pause = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
        ids = []
        for n in range(count):
            ids.append(str(record.delay(markers, n).task_run_id))
            time.sleep(pause)
        print(json.dumps({"ids": ids}))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
