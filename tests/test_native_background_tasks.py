"""Background tasks (`task.delay()` / `task.serve()`) through the load balancer of
the native stack: 3 API replicas, task workers and submitters on the LB URL only."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from prefectstack.polling import poll

from background_workload import BackgroundWorkload


@pytest.fixture()
def workload(stack, tmp_path):
    w = BackgroundWorkload(stack, tmp_path)
    w.start_workers(2)
    yield w
    w.stop()


def test_fifty_delays_through_the_lb_each_complete_once(stack, workload):
    assert len(stack.api_ports) == 3
    ids = workload.submitted(workload.submit(50))
    workload.assert_each_completed_once(ids)


def test_every_replica_and_redis_killed_mid_way_nothing_lost_or_run_twice(stack, workload):
    """The queue lives in Redis and each worker's subscription on some replica:
    killing every replica in turn (so each subscription dies once) and then Redis,
    while runs are being submitted, must neither lose nor repeat a run."""
    submitter = workload.submit(50, pause=1.0)
    for name in ("api-1", "api-2", "api-3", "redis"):
        before = stack.status()[name]["restarts"]
        assert "SIGKILL" in stack.cli("kill", name).stdout
        row = poll(
            lambda n=name: stack.status()[n],
            lambda r, b=before: r["healthy"] and r["restarts"] > b,
            timeout=120,
        )
        assert row["healthy"], row
    ids = workload.submitted(submitter)
    assert len(ids) == 50
    workload.assert_each_completed_once(ids)


def _stuck_row(stack) -> dict:
    result = stack.cli("doctor", "--json", check=False)
    return {r["name"]: r for r in json.loads(result.stdout)}["background task runs"]


def _exporter_stuck(stack) -> float:
    text = httpx.get(f"http://127.0.0.1:{stack.env['PREFECT_EXPORTER_PORT']}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    return families["prefectstack_background_task_runs_stuck"].samples[0].value


def test_a_background_task_run_no_worker_serves_is_reported_stuck(stack):
    """A deferred run due an hour ago for a task nobody serves: doctor fails its row
    naming the task, the exporter counts it; deleting it clears both."""
    key = f"nobody-serves-{uuid.uuid4().hex[:8]}"
    due = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    state = {"type": "SCHEDULED", "state_details": {"deferred": True, "scheduled_time": due}}
    body = {"name": "stuck", "task_key": key, "dynamic_key": "0", "state": state}
    with stack.client() as client:
        run = client.post("/task_runs/", json=body)
        assert run.status_code == 201, run.text
        run_id = run.json()["id"]
        try:
            row = _stuck_row(stack)
            assert row["status"] == "fail" and f"{key} (1)" in row["detail"], row
            assert _exporter_stuck(stack) >= 1
        finally:
            assert client.delete(f"/task_runs/{run_id}").status_code == 204
    assert _stuck_row(stack)["status"] == "pass"
    assert _exporter_stuck(stack) == 0
