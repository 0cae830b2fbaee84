"""Failures the native stack must survive or report: every component killed under
load (`prefectstack drill`), a replica that cannot start, a full stop and start.
Runs after the e2e module on the same session stack; the order of the tests
below matters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from prefectstack import health
from prefectstack.operations.drill import LOSSES as DRILL_LOSSES
from prefectstack.operations.drill_targets import COMPONENTS

from conftest import FLOWS, port_taken
from test_native_e2e import poll


def process_groups(pids: list[int]) -> set[int]:
    """Every live process in the process groups led by `pids` (nginx workers etc.)."""
    groups = set(pids)
    members = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) in groups:
                members.add(int(entry.name))
        except ProcessLookupError:
            continue
    return members


def redis_client(stack, *, db: int):
    return health.redis_client(
        host="127.0.0.1",
        port=int(stack.env["PREFECT_REDIS_MESSAGING_PORT"]),
        password=stack.env["REDIS_PASSWORD"],
        db=db,
    )


def flow_run_count(stack, flow_name: str) -> int:
    with stack.client() as client:
        body = {"flows": {"name": {"any_": [flow_name]}}}
        return client.post("/flow_runs/count", json=body).json()


def loop_runs_survive(stack, tmp_path, crash) -> None:
    """3 clients run 10 small flow runs each through the load balancer; `crash()` is
    called once runs are in flight. Every run must complete, with no client error and
    no duplicate created by a request re-sent to another replica."""
    before = flow_run_count(stack, "e2e-loop")
    clients = []
    for i in range(3):
        home = tmp_path / f"home-{i}"
        home.mkdir()
        clients.append(
            subprocess.Popen(
                [sys.executable, str(FLOWS / "loop.py"), "10"],
                env=stack.client_env(home),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        started = poll(
            lambda: flow_run_count(stack, "e2e-loop") - before, lambda n: n >= 3, timeout=60
        )
        assert started >= 3
        crash()
        outputs = [proc.communicate(timeout=300) for proc in clients]
    finally:
        for proc in clients:
            proc.kill()
    runs = []
    for proc, (stdout, stderr) in zip(clients, outputs, strict=True):
        assert proc.returncode == 0, stderr
        runs += json.loads(stdout.strip().splitlines()[-1])["runs"]
    assert len(runs) == 30
    errors = [r for r in runs if r["state"] != "COMPLETED"]
    assert not errors, errors[0].get("error", errors[0])

    with stack.client() as client:
        ids = [r["id"] for r in runs]
        stored = client.post("/flow_runs/filter", json={"flow_runs": {"id": {"any_": ids}}}).json()
        assert {r["state_type"] for r in stored} == {"COMPLETED"}
        assert len(stored) == 30
    assert flow_run_count(stack, "e2e-loop") - before == 30


def assert_drill_lost_nothing(stack, components: list[str]) -> list[dict]:
    """`prefectstack drill --json` with a small workload; every count must be 0."""
    result = stack.cli("drill", "--clients", "2", "--runs", "5", "--json", check=False,
                       timeout=1800)  # fmt: skip
    assert result.stdout.strip(), f"drill exited {result.returncode}:\n{result.stderr[-3000:]}"
    outcomes = json.loads(result.stdout)
    assert [o["component"] for o in outcomes] == components
    for o in outcomes:
        losses = {k: o[k] for k in DRILL_LOSSES if o[k]}
        assert not losses, (o["component"], losses, o["notes"])
        assert o["runs"] == 10, o
        assert o["killed"], o
        assert o["recovery_s"] is not None and o["passed"], o
    assert result.returncode == 0, result.stderr
    return outcomes


def test_drill_kills_every_component_and_nothing_is_lost(stack):
    outcomes = assert_drill_lost_nothing(stack, list(COMPONENTS))
    killed = {o["component"]: o["killed"] for o in outcomes}
    assert killed["api"] == ["api-1"] and killed["services"] == ["services-1"]
    assert {"prometheus", "alertmanager", "prefect-exporter"} <= set(killed["monitoring"])
    assert stack.status()["services-1"]["restarts"] >= 1


def test_drill_rejects_an_unknown_component(stack):
    result = stack.cli("drill", "pgbouncer", check=False)
    assert result.returncode != 0
    assert "unknown component pgbouncer: use api, services, redis" in result.stderr


def test_kill_9_of_a_replica_under_load_loses_nothing(stack, tmp_path):
    def crash():
        assert "SIGKILL" in stack.cli("kill", "api-2").stdout

    loop_runs_survive(stack, tmp_path, crash)

    row = poll(
        lambda: stack.status()["api-2"],
        lambda r: r["healthy"] and r["restarts"] >= 1,
        timeout=120,
    )
    assert row["healthy"] and row["restarts"] >= 1
    port = stack.api_ports[1]
    assert httpx.get(f"http://127.0.0.1:{port}/api/ready").status_code == 200
    restart_log = (stack.state / "logs" / "restart-counter.log").read_text()
    assert "api-2: exited unexpectedly" in restart_log


def test_a_replica_that_cannot_start_is_reported_with_the_reason(stack):
    port = stack.api_ports[2]
    stack.cli("stop", "api-3")
    with port_taken(port):
        restart = stack.cli("restart", "api-3", check=False)
        assert restart.returncode != 0
        assert "api-3" in restart.stderr
        assert f"Port {port} is already in use" in restart.stderr

        up = stack.cli("up", check=False)
        assert up.returncode != 0
        assert f"api-3 (PREFECT_API_FIRST_PORT={port})" in up.stderr
        assert "already in use" in up.stderr
        assert stack.status()["api-3"]["healthy"] is False
    stack.cli("up")
    # A live probe: under CI load one answer may come late right after the start.
    row = poll(lambda: stack.status()["api-3"], lambda r: r["healthy"], timeout=60, interval=2)
    assert row["healthy"] is True, row


def prometheus_replica_targets(stack) -> int:
    url = f"http://127.0.0.1:{stack.env['PROMETHEUS_PORT']}/api/v1/targets"
    targets = httpx.get(url).json()["data"]["activeTargets"]
    return sum(t["labels"]["job"] == "prefect-api" for t in targets)


def test_scaling_replicas_up_and_back_down(stack):
    original = stack.env_file.read_text()
    first = int(stack.env["PREFECT_API_FIRST_PORT"])
    stack.env_file.write_text(original.replace("PREFECT_API_REPLICAS=3", "PREFECT_API_REPLICAS=4"))
    try:
        result = stack.cli("up")
        assert "nginx" in result.stderr and "reloaded its configuration" in result.stderr
        assert stack.status()["api-4"]["healthy"]
        log = stack.state / "logs" / "nginx.log"
        before = log.stat().st_size
        with stack.client() as client:
            for _ in range(80):
                client.post("/flows/filter", json={"limit": 1})
        with log.open() as fh:
            fh.seek(before)
            assert f'ua="127.0.0.1:{first + 3}"' in fh.read()
        assert poll(lambda: prometheus_replica_targets(stack), lambda n: n == 4, timeout=30) == 4
    finally:
        stack.env_file.write_text(original)
    stack.cli("up")
    assert "api-4" not in stack.status()
    assert poll(lambda: prometheus_replica_targets(stack), lambda n: n == 3, timeout=30) == 3
    assert httpx.get(f"{stack.api}/ready").status_code == 200


def test_down_stops_every_process_and_up_keeps_the_data(stack, client_home):
    earlier = stack.run_flow("etl.py", "1", home=client_home)
    marker = os.urandom(8).hex()
    spare_db = redis_client(stack, db=9)
    spare_db.set("prefectstack-test-marker", marker)
    pids = stack.pids()
    assert len(pids) >= 7  # postgres, redis, 3 replicas, services, nginx
    members = process_groups(pids)
    assert members >= set(pids)

    stack.cli("down")
    assert process_groups(pids) == set(), "processes survived `down`"
    assert stack.status() and all(row["state"] == "DOWN" for row in stack.status().values())

    stack.cli("up")
    with stack.client() as client:
        run = client.get(f"/flow_runs/{earlier['flow_run_id']}")
        assert run.status_code == 200
        assert run.json()["state_type"] == "COMPLETED"
        assert flow_run_count(stack, "e2e-loop") >= 30
    # Redis's append-only file brought its data back too.
    assert redis_client(stack, db=9).get("prefectstack-test-marker") == marker


def _emit(client, event: str, resource: str) -> str:
    event_id = str(uuid.uuid4())
    body = [{"id": event_id, "occurred": datetime.now(UTC).isoformat(), "event": event,
             "resource": {"prefect.resource.id": resource}}]  # fmt: skip
    assert client.post("/events", json=body).status_code == 204
    return event_id


def _actions_for(client, *event_ids: str) -> int:
    """Actions the automation took for these triggering events."""
    body = {"filter": {
        "event": {"name": ["prefect.automation.action.triggered"]},
        "any_resource": {"id": [f"prefect.event.{e}" for e in event_ids]},
        "occurred": {"since": (datetime.now(UTC) - timedelta(minutes=10)).isoformat()},
    }}  # fmt: skip
    return len(client.post("/events/filter", json=body).json()["events"])


def _scheduled_runs(client, deployment_id: str) -> list[dict]:
    body = {"deployments": {"id": {"any_": [deployment_id]}}, "limit": 200}
    return client.post("/flow_runs/filter", json=body).json()


def _interval_deployment(client, name: str) -> str:
    flow_id = client.post("/flows/", json={"name": "ha-scheduling"}).json()["id"]
    body = {"name": name, "flow_id": flow_id,
            "schedules": [{"schedule": {"interval": 5}, "active": True}]}  # fmt: skip
    created = client.post("/deployments/", json=body)
    assert created.status_code in (200, 201), created.text
    return created.json()["id"]


def test_two_services_processes_schedule_once_and_one_down_changes_nothing(stack):
    tag = uuid.uuid4().hex[:8]
    with stack.client() as client:
        # A reactive automation fires exactly once per triggering event, although
        # two processes consume the events stream.
        trigger = {"type": "event", "posture": "Reactive", "expect": ["prefectstack.test.ping"],
                   "match": {"prefect.resource.id": f"prefectstack.test.{tag}.*"},
                   "threshold": 1, "within": 0}  # fmt: skip
        automation = client.post("/automations/", json={
            "name": f"ha-{tag}", "trigger": trigger, "actions": [{"type": "do-nothing"}],
        })  # fmt: skip
        assert automation.status_code == 201, automation.text
        # Until both processes have loaded it, an event may pass unseen: warm up.
        warm_ids: list[str] = []

        def warm_up() -> int:
            warm_ids.append(_emit(client, "prefectstack.test.ping", f"prefectstack.test.{tag}.w"))
            return _actions_for(client, *warm_ids)

        warm = poll(warm_up, lambda n: n >= 1, timeout=60, interval=2)
        assert warm >= 1
        fired = [_emit(client, "prefectstack.test.ping", f"prefectstack.test.{tag}.{i}")
                 for i in range(3)]  # fmt: skip
        counts = poll(lambda: [_actions_for(client, e) for e in fired],
                      lambda c: all(c), timeout=60)  # fmt: skip
        assert counts == [1, 1, 1]

        first = _interval_deployment(client, f"ha-{tag}-1")
        runs = poll(lambda: _scheduled_runs(client, first), lambda r: len(r) >= 3, timeout=60)
        assert len(runs) >= 3
        # A crash (SIGKILL: what it was running stays claimed on docket), then kept
        # down, since the supervisor would restart it within seconds: what follows
        # is the survivor's work alone.
        assert "SIGKILL" in stack.cli("kill", "services-1").stdout
        stack.cli("stop", "services-1")
        try:
            assert stack.status()["services-2"]["healthy"]
            # One process left: a new deployment is still scheduled ...
            second = _interval_deployment(client, f"ha-{tag}-2")
            later = poll(lambda: _scheduled_runs(client, second), lambda r: len(r) >= 3,
                         timeout=60)  # fmt: skip
            assert len(later) >= 3

            # ... and runs nobody picks up are marked Late on time (15 s after
            # their start time, checked every 5 s).
            def overdue_not_late():
                cutoff = datetime.now(UTC) - timedelta(seconds=40)
                return [r for r in _scheduled_runs(client, first)
                        if datetime.fromisoformat(r["expected_start_time"]) < cutoff
                        and r["state_name"] != "Late"]  # fmt: skip

            assert poll(lambda: datetime.now(UTC) - datetime.fromisoformat(
                runs[0]["expected_start_time"]), lambda age: age > timedelta(seconds=45),
                timeout=60)  # fmt: skip
            # Bounded, not immediate: a service the crashed process was running returns
            # to the survivor after the redelivery timeout (prefect.env: 30 s).
            assert poll(overdue_not_late, lambda r: r == [], timeout=90, interval=5) == []
            late = [r for r in _scheduled_runs(client, first) if r["state_name"] == "Late"]
            assert late
        finally:
            stack.cli("restart", "services-1")
        assert stack.status()["services-1"]["healthy"]
        # Both processes ran the scheduler: still one run per scheduled time.
        for deployment in (first, second):
            times = Counter(r["expected_start_time"] for r in _scheduled_runs(client, deployment))
            assert max(times.values()) == 1, times.most_common(3)
        client.delete(f"/deployments/{first}")
        client.delete(f"/deployments/{second}")
