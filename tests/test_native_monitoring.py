"""Monitoring of the running native stack: every target up, every dashboard
panel answered by the live Prometheus after a workload, a real alert."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from prefectstack.monitoring import dashboards

from test_native_e2e import poll

WORKER_POOL = "e2e-pool"


def prometheus(stack) -> str:
    return f"http://127.0.0.1:{stack.env['PROMETHEUS_PORT']}"


def query(stack, promql: str) -> list[dict]:
    body = httpx.get(f"{prometheus(stack)}/api/v1/query", params={"query": promql}).json()
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.fixture(scope="module")
def workload(stack, tmp_path_factory):
    """Flow runs with tasks, a worker polling a pool, and a backup."""
    home = tmp_path_factory.mktemp("monitoring-home")
    for _ in range(3):
        assert stack.run_flow("etl.py", "3", home=home)["state"] == "COMPLETED"
    worker = subprocess.run(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", WORKER_POOL,
         "--type", "process", "--run-once", "--install-policy", "never"],
        env=stack.client_env(home), capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert worker.returncode == 0, worker.stderr
    stack.cli("backup")
    return home


def test_every_prometheus_target_is_up(stack):
    def targets():
        body = httpx.get(f"{prometheus(stack)}/api/v1/targets").json()
        return body["data"]["activeTargets"]

    active = poll(targets, lambda ts: ts and all(t["health"] == "up" for t in ts), timeout=90)
    jobs = {t["labels"]["job"] for t in active}
    assert jobs == {
        "prefect-api", "prefect-exporter", "postgres", "redis", "nginx", "nginx-log",
        "alertmanager", "prometheus",
    }  # fmt: skip
    down = [(t["scrapeUrl"], t["lastError"]) for t in active if t["health"] != "up"]
    assert not down
    replicas = [t for t in active if t["labels"]["job"] == "prefect-api"]
    assert len(replicas) == len(stack.api_ports)


def substitute(expr: str) -> str:
    """What Grafana does with the dashboards' variables (route = All)."""
    return expr.replace("$__rate_interval", "2m").replace("$route", ".*")


@pytest.mark.parametrize("board", sorted(dashboards.DASHBOARDS))
def test_every_dashboard_panel_has_data_after_a_workload(stack, workload, board):
    queries = dashboards.panel_queries(dashboards.DASHBOARDS[board]())
    empty = []
    for title, expr in queries:
        # Scrapes run every 15-30 s: wait for each series rather than sleeping.
        result = poll(lambda e=expr: query(stack, substitute(e)), bool, timeout=90, interval=3)
        if not result:
            empty.append(f"{title}: {expr}")
    assert not empty, "panels without data:\n" + "\n".join(empty)


def test_exporter_reports_the_workload(stack, workload):
    completed = query(stack, 'prefectstack_flow_runs{state_type="COMPLETED"}')
    assert completed and float(completed[0]["value"][1]) >= 3
    pools = query(stack, f'prefectstack_work_pool_status{{pool="{WORKER_POOL}"}}')
    assert pools
    lag = query(stack, 'prefectstack_event_persist_lag_seconds{quantile="0.95"}')
    assert lag and 0 <= float(lag[0]["value"][1]) < 30
    live = query(stack, "prefectstack_background_services_live")
    expected = query(stack, "prefectstack_background_services_expected")
    assert float(expected[0]["value"][1]) == int(stack.env["PREFECT_SERVICES_REPLICAS"]) == 2
    assert float(live[0]["value"][1]) == 2


def alert_state(stack, name: str) -> set[str]:
    return {r["metric"]["alertstate"] for r in query(stack, f'ALERTS{{alertname="{name}"}}')}


def test_replica_down_alert_fires_and_resolves(stack):
    port = stack.api_ports[2]
    stack.cli("stop", "api-3")
    try:
        firing = poll(
            lambda: {
                r["metric"]["instance"]
                for r in query(
                    stack, 'ALERTS{alertname="PrefectApiReplicaDown",alertstate="firing"}'
                )
            },
            lambda instances: f"127.0.0.1:{port}" in instances,
            timeout=180,
            interval=5,
        )
        assert f"127.0.0.1:{port}" in firing
        # Alertmanager received it too.
        alerts = httpx.get(
            f"http://127.0.0.1:{stack.env['ALERTMANAGER_PORT']}/api/v2/alerts"
        ).json()
        assert "PrefectApiReplicaDown" in {a["labels"]["alertname"] for a in alerts}
    finally:
        stack.cli("restart", "api-3")
    resolved = poll(
        lambda: alert_state(stack, "PrefectApiReplicaDown"),
        lambda s: not s,
        timeout=120,
        interval=5,
    )
    assert not resolved
