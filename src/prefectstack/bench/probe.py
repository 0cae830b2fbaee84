"""Visibility probe of `prefectstack bench`: how soon what a client does is
readable through the API, measured by a client while the load runs.

Each sample is one flow run with one task: from the task's Completed state (its
client-side timestamp) until the API answers that task run COMPLETED, then from
emitting a custom event until /events/filter returns it. Prints one JSON line per
sample (null for a figure that did not show up within TIMEOUT_S). It stops once
STOP_FILE exists and it has printed at least one sample, so that a load shorter
than the probe's first (slowest) sample still gets a figure; or at DEADLINE.
Usage: python -m prefectstack.bench.probe STOP_FILE DEADLINE FLOW
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from prefect import flow, task
from prefect.events import emit_event
from prefect.settings import get_current_settings

POLL_S = 0.02
TIMEOUT_S = 30.0


def _api() -> httpx.Client:
    api = get_current_settings().api
    auth = api.auth_string.get_secret_value().partition(":") if api.auth_string else None
    verify = api.ssl_cert_file or True  # PREFECT_API_SSL_CERT_FILE: the stack's CA, with TLS
    return httpx.Client(
        base_url=api.url, auth=(auth[0], auth[2]) if auth else None, timeout=10, verify=verify
    )


def _ms_until(seen, since: float) -> float | None:
    while time.time() - since < TIMEOUT_S:
        if seen():
            return round((time.time() - since) * 1000, 1)
        time.sleep(POLL_S)
    return None


@task
def probe_step() -> None:
    pass


def task_run_ms(http: httpx.Client) -> float | None:
    """Inside the probe's flow: run the task, then poll while the flow is still
    running (the engine's flow-run teardown takes about a second of its own)."""
    state = probe_step(return_state=True)
    run_id = state.state_details.task_run_id
    return _ms_until(
        lambda: http.get(f"/task_runs/{run_id}").json().get("state_type") == "COMPLETED",
        state.timestamp.timestamp(),
    )


def event_ms(http: httpx.Client) -> float | None:
    resource = f"prefectstack.bench-probe.{uuid.uuid4()}"
    body = {
        "filter": {
            "resource": {"id": [resource]},
            "occurred": {"since": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()},
        },
        "limit": 1,
    }
    emitted = time.time()
    emit_event(event="prefectstack.bench.probe", resource={"prefect.resource.id": resource})
    return _ms_until(lambda: bool(http.post("/events/filter", json=body).json()["events"]), emitted)


def main() -> None:
    stop_file, deadline, name = sys.argv[1], float(sys.argv[2]), sys.argv[3]

    stop_at = time.monotonic() + deadline
    with _api() as http:

        @flow(name=name)
        def probe_flow() -> float | None:
            return task_run_ms(http)

        while True:
            sample = {"task_run_ms": probe_flow(), "event_ms": event_ms(http)}
            print(json.dumps(sample), flush=True)
            if os.path.exists(stop_file) or time.monotonic() > stop_at:
                break


if __name__ == "__main__":
    main()
