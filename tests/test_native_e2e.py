"""End-to-end behaviour of the running native stack, through its load balancer."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from prefectstack.polling import poll

from conftest import FLOWS


def test_health_and_ready_through_lb_without_credentials(stack):
    assert httpx.get(f"{stack.api}/health").json() is True
    ready = httpx.get(f"{stack.api}/ready")
    assert ready.status_code == 200
    assert ready.json() == {"message": "OK"}


def test_ui_loads_through_lb_and_points_at_lb(stack):
    page = httpx.get(stack.lb + "/", follow_redirects=True, headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "<script" in page.text
    settings = httpx.get(f"{stack.lb}/ui-settings").json()
    assert settings["api_url"] == stack.api
    assert settings["auth"] == "BASIC"


def test_requests_without_credentials_are_rejected(stack):
    assert httpx.post(f"{stack.api}/flows/filter", json={}).status_code == 401
    wrong = httpx.post(f"{stack.api}/flows/filter", json={}, auth=("admin", "wrong"))
    assert wrong.status_code == 401
    with stack.client() as client:
        assert client.post("/flows/filter", json={}).status_code == 200
        assert client.get("/admin/version").json() == "3.9.1"


def test_flow_with_tasks_logs_and_events_is_fully_recorded(stack, client_home):
    out = stack.run_flow("etl.py", "4", home=client_home)
    assert out["state"] == "COMPLETED"
    assert out["result"] == 14
    run_id = out["flow_run_id"]
    with stack.client() as client:
        run = client.get(f"/flow_runs/{run_id}").json()
        assert run["state_type"] == "COMPLETED"

        # Task runs reach the database only through events -> Redis -> the
        # background services' task-run recorder: the in-memory broker loses them.
        def task_runs():
            body = {"flow_runs": {"id": {"any_": [run_id]}}}
            return client.post("/task_runs/filter", json=body).json()

        # The recorder applies each state event as it arrives, so the last
        # transition may land after the run count is complete.
        tasks = poll(
            task_runs,
            lambda t: len(t) >= out["tasks"] and all(r["state_type"] == "COMPLETED" for r in t),
        )
        assert len(tasks) == out["tasks"]
        assert {t["state_type"] for t in tasks} == {"COMPLETED"}
        assert Counter(t["task_key"].split("-")[0] for t in tasks) == {"square": 4, "total": 1}

        logs = poll(
            lambda: client.post(
                "/logs/filter", json={"logs": {"flow_run_id": {"any_": [run_id]}}}
            ).json(),
            lambda rows: len(rows) >= 6,
        )
        messages = [row["message"] for row in logs]
        assert "start with 4 tasks" in messages
        assert "finished: total=14" in messages
        assert sum("squaring" in m for m in messages) == 4

        def events():
            body = {
                "filter": {
                    "any_resource": {"id": [f"prefect.flow-run.{run_id}"]},
                    "occurred": {"since": (datetime.now(UTC) - timedelta(hours=1)).isoformat()},
                },
                "limit": 50,
            }
            return client.post("/events/filter", json=body).json()["events"]

        names = poll(
            lambda: {e["event"] for e in events()},
            lambda n: {"prefect.flow-run.Completed", "prefect.task-run.Completed"} <= n,
        )
        assert {
            "prefect.flow-run.Pending",
            "prefect.flow-run.Running",
            "prefect.flow-run.Completed",
            "prefect.task-run.Completed",
        } <= names


def test_events_out_subscriber_receives_events_of_a_run_made_elsewhere(stack, client_home):
    received: list[dict] = []
    ready = threading.Event()
    stop = threading.Event()
    errors: list[BaseException] = []

    def subscribe():
        try:
            with stack.events_socket() as ws:
                now = datetime.now(UTC)
                ws.send(
                    json.dumps(
                        {
                            "type": "filter",
                            "filter": {
                                "occurred": {
                                    "since": now.isoformat(),
                                    "until": (now + timedelta(days=1)).isoformat(),
                                },
                                "event": {"prefix": ["prefect.flow-run."]},
                            },
                        }
                    )
                )
                ready.set()
                while not stop.is_set():
                    try:
                        message = json.loads(ws.recv(timeout=1))
                    except TimeoutError:
                        continue
                    if message.get("type") == "event":
                        received.append(message["event"])
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=subscribe, daemon=True)
    thread.start()
    assert ready.wait(20)
    assert not errors, errors
    try:
        out = stack.run_flow("etl.py", "2", home=client_home)
        resource = f"prefect.flow-run.{out['flow_run_id']}"
        got = poll(
            lambda: {
                e["event"] for e in received if e["resource"]["prefect.resource.id"] == resource
            },
            lambda names: "prefect.flow-run.Completed" in names,
            timeout=30,
        )
    finally:
        stop.set()
        thread.join(10)
    assert not errors, errors
    assert {"prefect.flow-run.Running", "prefect.flow-run.Completed"} <= got


def test_requests_are_spread_over_all_replicas(stack):
    log = stack.state / "logs" / "nginx.log"  # nginx's access log goes to stdout
    before = log.stat().st_size
    with stack.client() as client:
        for _ in range(60):
            assert client.post("/flows/filter", json={"limit": 1}).status_code == 200
    with log.open() as fh:
        fh.seek(before)
        upstreams = Counter(re.findall(r'ua="([^"]+)"', fh.read()))
    expected = {f"127.0.0.1:{port}" for port in stack.api_ports}
    assert set(upstreams) == expected, upstreams
    assert min(upstreams.values()) >= 5, upstreams


def test_status_reports_every_service_healthy(stack):
    rows = stack.status()
    assert {"postgres", "redis", "migrate", "services-1", "services-2", "nginx"} <= set(rows)
    assert {f"api-{i}" for i in (1, 2, 3)} <= set(rows)
    unhealthy = {name: row for name, row in rows.items() if not row["healthy"]}
    assert not unhealthy
    assert rows["migrate"]["health"] == "completed"
    assert rows["api-2"]["port"] == stack.api_ports[1]


@pytest.mark.parametrize("command", ["status", "logs"])
def test_cli_commands_answer(stack, command):
    args = [command] if command == "status" else [command, "api-1", "-n", "5"]
    result = stack.cli(*args)
    assert result.stdout.strip()


def test_flow_script_fails_loudly_without_credentials(stack, client_home):
    env = stack.client_env(client_home)
    env.pop("PREFECT_API_AUTH_STRING")
    result = subprocess.run(
        [sys.executable, str(FLOWS / "etl.py"), "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "401" in result.stderr or "Unauthorized" in result.stderr
