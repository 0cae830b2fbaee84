"""Failures the native stack must survive or report: a replica killed under load,
a replica that cannot start, a full stop and start. Runs after the e2e module
on the same session stack; the order of the tests below matters."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from prefectstack import health

from conftest import FLOWS
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
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", port))
    squatter.listen()
    try:
        restart = stack.cli("restart", "api-3", check=False)
        assert restart.returncode != 0
        assert "api-3" in restart.stderr
        assert f"Port {port} is already in use" in restart.stderr

        up = stack.cli("up", check=False)
        assert up.returncode != 0
        assert f"api-3 (PREFECT_API_FIRST_PORT={port})" in up.stderr
        assert "already in use" in up.stderr
        assert stack.status()["api-3"]["healthy"] is False
    finally:
        squatter.close()
    stack.cli("up")
    assert stack.status()["api-3"]["healthy"] is True


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
