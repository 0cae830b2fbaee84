"""Run a bounded number of small flow runs in sequence; report each outcome as JSON.

Usage: python loop.py COUNT
Errors are caught and reported rather than raised, so the caller sees every one.
"""

import json
import sys
import traceback

from prefect import flow, task


@task
def step(i: int) -> int:
    return i + 1


@flow(name="e2e-loop")
def small(i: int) -> int:
    return step(i)


if __name__ == "__main__":
    runs = []
    for i in range(int(sys.argv[1])):
        try:
            state = small(i, return_state=True)
            runs.append({"id": str(state.state_details.flow_run_id), "state": state.type.value})
        except Exception:
            runs.append({"id": None, "state": "CLIENT_ERROR", "error": traceback.format_exc()})
    print(json.dumps({"runs": runs}))
