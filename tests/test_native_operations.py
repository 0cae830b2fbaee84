"""Day-2 commands against the running native stack: doctor, client-config."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from prefectstack import health
from prefectstack.operations.doctor import DEAD_LETTERS

from conftest import FLOWS
from test_native_e2e import poll


def doctor(stack) -> tuple[int, dict[str, dict]]:
    result = stack.cli("doctor", "--json", check=False)
    return result.returncode, {row["name"]: row for row in json.loads(result.stdout)}


def failing(rows: dict[str, dict]) -> set[str]:
    return {name for name, row in rows.items() if row["status"] == "fail"}


def test_doctor_passes_on_a_healthy_stack(stack):
    stack.cli("backup")
    code, rows = poll(lambda: doctor(stack), lambda r: r[0] == 0, timeout=120, interval=3)
    assert code == 0, {n: r for n, r in rows.items() if r["status"] != "pass"}
    assert {
        "load balancer", "api-1 ready", "postgres", "postgres: pg_trgm", "postgres: migrations",
        "redis", "redis: append-only file", "redis: memory", "redis: events/event-persister",
        "background services", "prometheus targets", "newest backup",
    } <= set(rows)  # fmt: skip
    assert all(row["status"] == "pass" for row in rows.values()), rows


def test_doctor_fails_the_rows_of_a_stopped_replica(stack):
    stack.cli("stop", "api-2")
    try:
        code, rows = doctor(stack)
        assert code == 1
        assert "api-2 ready" in failing(rows)
        assert rows["api-1 ready"]["status"] == "pass"
        assert rows["postgres"]["status"] == "pass"
    finally:
        stack.cli("restart", "api-2")


def test_doctor_warns_when_a_consumer_dead_lettered_messages(stack):
    """prefect-redis gives up on a message after its retries and parks it in the
    'dlq' set: events there are never stored, which doctor must not hide."""
    client = health.redis_client(
        host="127.0.0.1", port=int(stack.env["PREFECT_REDIS_MESSAGING_PORT"]),
        password=stack.env["REDIS_PASSWORD"], db=int(stack.env["PREFECT_REDIS_MESSAGING_DB"]),
    )  # fmt: skip
    client.sadd(DEAD_LETTERS, "dlq:doctor-test")
    try:
        row = doctor(stack)[1]["redis: dead-letter queue"]
        assert row["status"] == "warn" and "1 messages" in row["detail"], row
    finally:
        client.srem(DEAD_LETTERS, "dlq:doctor-test")
    assert doctor(stack)[1]["redis: dead-letter queue"]["status"] == "pass"


def test_doctor_fails_the_redis_rows_when_redis_stops(stack):
    stack.cli("stop", "redis")
    try:
        code, rows = doctor(stack)
        assert code == 1
        assert "redis" in failing(rows)
        assert "background services" in failing(rows)
        assert rows["postgres"]["status"] == "pass"
        assert rows["load balancer"]["status"] == "pass"
    finally:
        stack.cli("restart", "redis")
    # Everything recovers on its own once Redis is back.
    code, rows = poll(lambda: doctor(stack), lambda r: r[0] == 0, timeout=180, interval=5)
    assert code == 0, {n: r for n, r in rows.items() if r["status"] != "pass"}


def test_client_config_profile_points_a_client_at_the_stack(stack, tmp_path):
    home = tmp_path / "laptop"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(home)
    written = subprocess.run(
        [sys.executable, "-m", "prefectstack", "client-config", "--profile", "mystack",
         "--env-file", str(stack.env_file)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    # Only the profile tells the client where the stack is.
    run = subprocess.run(
        [sys.executable, str(FLOWS / "etl.py"), "1"],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["state"] == "COMPLETED"
    with stack.client() as client:
        assert client.get(f"/flow_runs/{result['flow_run_id']}").status_code == 200


def test_client_config_env_exports_work_in_a_shell(stack, tmp_path):
    exports = stack.cli("client-config").stdout
    assert f"export PREFECT_API_URL={stack.api}" in exports
    script = f"{exports}\n{sys.executable} -m prefect flow-run ls --limit 1"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path)
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                            timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
