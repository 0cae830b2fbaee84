"""The compose deployment running for real: docker-compose.yml with the
registry-free local images, on a Docker engine, checked from the host through
the published ports as a user would."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime

import httpx
import pytest
from compose_harness import ComposeStack, compose_stack  # noqa: F401 (the compose project)
from s3_store import s3_store

from prefectstack.checks import S3_OVERRIDE
from prefectstack.operations.drill_targets import COMPONENTS

import test_native_e2e as native_e2e  # its scenarios, run here against compose
from background_workload import BackgroundWorkload
from bench_figures import assert_bench_runs_deleted, assert_complete, run_short_bench
from browser import (
    browser_fixture,  # noqa: F401 (the `browser` fixture)
    check_pgadmin,
    check_prefect_ui,
    check_redis_ui,
    chromium,
    playwright_fixture,  # noqa: F401 (the `playwright` fixture)
)
from conftest import Stack, read_env, state_tmpdir, write_env
from rollout_workload import POOL_KEY, rollout_under_load, set_env_value
from test_native_archiving import _flow_runs
from test_native_e2e import poll
from test_native_resilience import assert_drill_lost_nothing, loop_runs_survive

BASE_IMAGE = "prefectstack-local/debian:bookworm"
ROLLED = ("prefect-api", "prefect-background")


@pytest.fixture()
def stack(compose_stack):  # noqa: F811 (the native tests' helpers take `stack`)
    return compose_stack


def test_up_wait_leaves_every_service_healthy(stack):
    rows = {row["Service"]: row for row in stack.containers()}
    assert "grafana" not in rows  # no local build: left out by the override's profile
    for service, row in rows.items():
        if service == "prefect-migrate":
            assert row["State"] == "exited" and row["ExitCode"] == 0, row
        else:
            assert row["State"] == "running" and row["Health"] == "healthy", row
    assert len(stack.containers("prefect-api")) == 3
    assert len(stack.containers("prefect-background")) == int(
        stack.env["PREFECT_SERVICES_REPLICAS"]
    )


def test_every_container_runs_a_local_image(stack):
    images = {row["Service"]: row["Image"] for row in stack.containers()}
    assert all(image.startswith("prefectstack-local/") for image in images.values()), images


def test_health_ready_ui_and_auth_through_nginx(stack):
    assert httpx.get(f"{stack.api}/health").json() is True
    assert httpx.get(f"{stack.api}/ready").json() == {"message": "OK"}
    settings = httpx.get(f"{stack.lb}/ui-settings").json()
    assert settings["api_url"] == stack.api
    assert settings["auth"] == "BASIC"
    assert httpx.post(f"{stack.api}/flows/filter", json={}).status_code == 401
    with stack.client() as client:
        assert client.get("/admin/version").json() == "3.9.1"


def test_flow_with_tasks_logs_and_events_from_the_host(stack, client_home):
    native_e2e.test_flow_with_tasks_logs_and_events_is_fully_recorded(stack, client_home)


def test_events_out_streams_through_nginx(stack, client_home):
    native_e2e.test_events_out_subscriber_receives_events_of_a_run_made_elsewhere(
        stack, client_home
    )


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def _run_on(stack, network: str, script: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "run", "--rm", "--network", stack.network(network), BASE_IMAGE,
         "bash", "-c", script],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_databases_are_private_to_the_backend_network(stack):
    pg_port, redis_port = int(stack.env["POSTGRES_PORT"]), 6379
    for row in stack.containers("postgres") + stack.containers("redis"):
        assert not row["Publishers"] or all(p["PublishedPort"] == 0 for p in row["Publishers"])
    # Nothing listens for them on the host's addresses. (The Docker host's root
    # can always reach container addresses on a bridge; other hosts cannot.)
    assert not _reachable("127.0.0.1", pg_port)
    assert not _reachable(stack.env["BIND_ADDRESS"], redis_port)
    probe = f"timeout 5 bash -c '</dev/tcp/postgres/{pg_port}' || timeout 5 bash -c '</dev/tcp/redis/{redis_port}'"  # noqa: E501
    assert _run_on(stack, "frontend", probe).returncode != 0
    # ... while the backend network reaches them, and nothing outside.
    assert (
        _run_on(stack, "backend", f"timeout 5 bash -c '</dev/tcp/postgres/{pg_port}'").returncode
        == 0
    )
    mirror = _run_on(stack, "backend", "timeout 8 bash -c '</dev/tcp/deb.debian.org/80'")
    assert mirror.returncode != 0


def _upstreams_since(stack, since: str) -> Counter:
    logs = stack.compose("logs", "--no-log-prefix", "--since", since, "nginx").stdout
    return Counter(re.findall(r'ua="([^",]+)', logs))


def _spread(stack, replicas: int, *, timeout: float = 60) -> Counter:
    since = datetime.now(UTC).isoformat()
    deadline = time.monotonic() + timeout
    with stack.client() as client:
        while True:
            for _ in range(20):
                assert client.post("/flows/filter", json={"limit": 1}).status_code == 200
            seen = _upstreams_since(stack, since)
            if len(seen) >= replicas or time.monotonic() > deadline:
                return seen


def _prometheus_replica_targets(stack) -> int:
    url = f"http://127.0.0.1:{stack.env['PROMETHEUS_PORT']}/api/v1/targets?state=active"
    targets = httpx.get(url, timeout=10).json()["data"]["activeTargets"]
    return sum(t["labels"]["job"] == "prefect-api" and t["health"] == "up" for t in targets)


def test_every_prometheus_target_up_and_rules_loaded(stack):
    base = f"http://127.0.0.1:{stack.env['PROMETHEUS_PORT']}/api/v1"

    def down():
        targets = httpx.get(f"{base}/targets?state=active", timeout=10).json()["data"]
        return [t["scrapeUrl"] for t in targets["activeTargets"] if t["health"] != "up"]

    assert poll(down, lambda d: not d, timeout=90, interval=3) == []
    groups = httpx.get(f"{base}/rules", timeout=10).json()["data"]["groups"]
    assert sum(len(g["rules"]) for g in groups) > 5


def test_scale_api_to_five_and_back_without_a_reload(stack):
    stack.compose("up", "-d", "--wait", "--no-recreate", "--scale", "prefect-api=5")
    try:
        seen = _spread(stack, 5)
        assert len(seen) == 5, seen
        assert poll(lambda: _prometheus_replica_targets(stack), lambda n: n == 5, timeout=90) == 5
    finally:
        stack.compose("up", "-d", "--wait", "--no-recreate", "--scale", "prefect-api=3")
    # nginx follows DNS back to three replicas; no request fails meanwhile.
    seen = _spread(stack, 3)
    assert len(stack.containers("prefect-api")) == 3
    assert len(stack.containers("prefect-background")) == int(
        stack.env["PREFECT_SERVICES_REPLICAS"]
    )
    assert len(_spread(stack, 3)) == 3, seen


def sigkill(container: str) -> None:
    """SIGKILL of the container's process, as a crash or the OOM killer would:
    Docker's restart policy brings it back."""
    pid = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Pid}}", container],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    os.kill(int(pid), signal.SIGKILL)


def wait_restarted_healthy(container: str, restarts: int = 1) -> None:
    def state():
        out = subprocess.run(
            ["docker", "inspect", "-f", "{{.RestartCount}} {{.State.Health.Status}}", container],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        return int(out[0]), out[1]

    final = poll(state, lambda s: s[0] >= restarts and s[1] == "healthy", timeout=120, interval=2)
    assert final[0] >= restarts and final[1] == "healthy", final


def test_crash_of_a_replica_under_load_loses_nothing(stack, tmp_path):
    victim = stack.containers("prefect-api")[1]["ID"]
    loop_runs_survive(stack, tmp_path, lambda: sigkill(victim))
    wait_restarted_healthy(victim)


def test_background_tasks_through_the_lb_survive_a_replica_crash(stack, tmp_path):
    """2 task workers and 50 task.delay() through the published LB, with 3 replicas;
    one replica SIGKILLed mid-way: every run completes, none twice."""
    workload = BackgroundWorkload(stack, tmp_path)
    workload.start_workers(2)
    try:
        submitter = workload.submit(50, pause=0.3)
        victim = stack.containers("prefect-api")[0]["ID"]
        restarts = int(
            subprocess.run(
                ["docker", "inspect", "-f", "{{.RestartCount}}", victim],
                capture_output=True, text=True, check=True,
            ).stdout
        )  # fmt: skip
        sigkill(victim)
        wait_restarted_healthy(victim, restarts + 1)
        workload.assert_each_completed_once(workload.submitted(submitter))
    finally:
        workload.stop()


def test_drill_through_docker_kills_every_component_and_nothing_is_lost(stack):
    outcomes = assert_drill_lost_nothing(stack, list(COMPONENTS))
    killed = {o["component"]: o["killed"] for o in outcomes}
    assert len(killed["api"]) == 1 and "prefect-api" in killed["api"][0]
    assert len(killed["services"]) == 1 and "prefect-background" in killed["services"][0]
    assert any("prometheus" in name for name in killed["monitoring"])
    # Docker's restart policy brought each one back (a crash, not a manual stop).
    assert all(row["State"] == "running" for row in stack.containers("prefect-background"))


def test_backup_verify_and_restore_through_compose(stack, client_home):
    scheduled = poll(
        lambda: list((stack.dir / "backups" / "last").glob("*.sql.gz")), bool, timeout=150
    )
    assert scheduled, "the pgbackups service wrote no scheduled dump"
    out = stack.cli("backup")
    path = re.findall(r"(/\S+\.sql\.gz)", out.stdout)[-1]  # the host path, printed last
    name = os.path.basename(path)
    assert re.fullmatch(rf"{stack.env['POSTGRES_DB']}-\d{{8}}-\d{{6}}\.sql\.gz", name)
    root = stack.dir / "backups"
    for folder in ("daily", "weekly", "monthly"):
        # Hard links of the same dump, each folder with its <db>-latest link.
        latest = root / folder / f"{stack.env['POSTGRES_DB']}-latest.sql.gz"
        assert latest.resolve().samefile(path), folder
    verified = stack.cli("backup", "verify", path)
    assert "rows" in verified.stdout

    with stack.client() as client:
        kept = client.post("/flow_runs/count", json={}).json()
    extra = stack.run_flow("etl.py", "1", home=client_home)["flow_run_id"]
    restored = stack.cli("restore", path, "--yes", timeout=900)
    assert "restored" in restored.stdout
    with stack.client() as client:
        assert client.post("/flow_runs/count", json={}).json() == kept
        assert client.get(f"/flow_runs/{extra}").status_code == 404


def test_wal_is_archived_and_a_point_in_time_restore_works(stack):
    """The postgres image carries pgBackRest: WAL reaches the repository in
    BACKUP_DIR, the scheduler service takes base backups, and `restore --to-time`
    brings the cluster back to a moment between two sets of flow runs."""
    listed = poll(
        lambda: json.loads(Stack.cli(stack, "backup", "list", "--json").stdout),
        lambda b: b["base_backups"] and b["recoverable"],
        timeout=240,
        interval=5,
    )
    assert listed["base_backups"][0]["kind"] == "full", listed
    archive = stack.dir / "backups" / "pgbackrest" / "archive" / stack.project
    assert list(archive.glob("*/*/*.lz4")), "no WAL segment in the repository"
    assert "(diff)" in stack.cli("backup", "--kind", "diff").stdout
    doctor = {
        row["name"]: row for row in json.loads(stack.cli("doctor", "--json", check=False).stdout)
    }
    for row in ("postgres: WAL archiving", "pgbackrest: base backups"):
        assert doctor[row]["status"] == "pass", doctor[row]

    before = _flow_runs(stack, 3, "before")
    target = datetime.now(UTC)
    after = _flow_runs(stack, 3, "after")
    result = stack.cli("restore", "--to-time", target.strftime("%Y-%m-%dT%H:%M:%S.%f%z"),
                       "--yes", timeout=1200)  # fmt: skip
    assert "restored" in result.stdout, result.stderr
    with stack.client() as client:
        body = {"flow_runs": {"id": {"any_": sorted(before | after)}}}
        assert {r["id"] for r in client.post("/flow_runs/filter", json=body).json()} == before
    safety = re.search(r"the data it replaced is in (\S+):", result.stdout)
    assert safety and os.path.getsize(safety.group(1)) > 0, result.stdout


def test_doctor_passes_on_the_healthy_stack(stack):
    # The restore above recreated the API containers: Prometheus finds their new
    # addresses at its next DNS refresh (15 s) and scrape; until then doctor says so.
    result = poll(lambda: stack.cli("doctor", "--json", check=False),
                  lambda r: r.returncode == 0, timeout=120, interval=10)  # fmt: skip
    rows = json.loads(result.stdout)
    assert result.returncode == 0, [r for r in rows if r["status"] == "fail"]


def test_bench_through_compose_reports_every_figure(stack):
    """The one-replica figures come from a replica's address on the backend network."""
    figures = run_short_bench(stack)
    assert_complete(figures, stock=False)
    assert figures["machine"]["mode"] == "compose"
    assert_bench_runs_deleted(stack)


def _container_env(container_id: str) -> dict[str, str]:
    env = subprocess.run(
        ["docker", "inspect", "-f", "{{json .Config.Env}}", container_id],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return dict(item.split("=", 1) for item in json.loads(env))


def _configuration_row(stack) -> dict:
    rows = json.loads(stack.cli("doctor", "--json", check=False).stdout)
    return next(row for row in rows if row["name"] == "configuration")


# Reads the repository as doctor and the metrics do in the exporter's container.
READ_REPOSITORY = """
import os
from prefectstack.backups import repository
from prefectstack.monitoring.exporter import pgbackrest_source
source = pgbackrest_source(dict(os.environ))
status = repository.status(source, os.environ["PGBACKREST_STANZA"])
print(type(source).__name__, len(status.backups))
"""


def test_s3_override_reaches_the_store_from_the_images(stack):
    """With docker-compose.s3.yml, the postgres image's pgBackRest and the prefect
    image's exporter code reach an S3 store with the settings compose renders
    (containers on the host's network: the test store listens on loopback)."""
    directory = state_tmpdir("prefectstack-compose-s3-")
    try:
        with s3_store(directory / "s3") as store:
            files = f"{stack.env['COMPOSE_FILE']}:{S3_OVERRIDE}"
            values = stack.env | store.settings() | {"COMPOSE_FILE": files}
            env_file = write_env(directory / ".env", values)
            s3_stack = ComposeStack(env_file, read_env(env_file))
            services = json.loads(s3_stack.compose("config", "--format", "json").stdout)["services"]
            runs = {
                "postgres": ["pgbackrest", "--log-level-file=off", "info", "--output=json"],
                "prefect-exporter": ["python", "-c", READ_REPOSITORY],
            }
            out = {}
            for name, (entrypoint, *args) in runs.items():
                svc = services[name]
                argv = ["docker", "run", "--rm", "--network", "host", "--entrypoint", entrypoint,
                        "-v", f"{store.ca}:/etc/prefectstack/s3-ca.pem:ro"]  # fmt: skip
                for key, value in svc["environment"].items():
                    argv += ["-e", f"{key}={value}"]
                result = subprocess.run([*argv, svc["image"], *args], capture_output=True,
                                        text=True, timeout=120, check=False)  # fmt: skip
                assert result.returncode == 0, (name, result.stderr)
                out[name] = result.stdout
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    # Reached the bucket, which has no stanza yet (an unreachable store is code 99).
    repo = json.loads(out["postgres"])[0]["repo"][0]["status"]
    assert repo == {"code": 1, "message": "missing stanza path"}, repo
    assert out["prefect-exporter"].split() == ["PgBackRest", "0"], out["prefect-exporter"]


def test_rollout_under_load_replaces_every_container_and_loses_nothing(stack):
    """A changed setting in .env: the rollout replaces each replica and services
    container by one with the setting, one at a time, under load, losing nothing."""
    before = {row["Name"] for svc in ROLLED for row in stack.containers(svc)}
    old_pool = set_env_value(stack, POOL_KEY, "6")
    try:
        assert set(_configuration_row(stack)["detail"].split(" run ")[0].split(", ")) == before
        rolled = rollout_under_load(stack)
        assert _configuration_row(stack)["status"] == "pass"
        after = {svc: stack.containers(svc) for svc in ROLLED}
        assert sorted(rolled) == sorted(row["Name"] for rows in after.values() for row in rows)
        assert not before & set(rolled), "an old container is still running"
        assert len(after["prefect-api"]) == int(stack.env["PREFECT_API_REPLICAS"])
        assert len(after["prefect-background"]) == int(stack.env["PREFECT_SERVICES_REPLICAS"])
        for row in after["prefect-api"]:
            assert _container_env(row["ID"])[POOL_KEY] == "6", row["Name"]
        assert len(_spread(stack, len(after["prefect-api"]))) == len(after["prefect-api"])
    finally:
        set_env_value(stack, POOL_KEY, old_pool)


def test_rollout_stops_at_a_container_that_does_not_become_healthy(stack):
    """A database name the new replica cannot use: it never becomes ready, so the
    rollout removes it and stops with the reason; the old replicas keep serving."""
    before = sorted(row["Name"] for row in stack.containers("prefect-api"))
    old_db = set_env_value(stack, "POSTGRES_DB", "nosuchdb")
    try:
        result = stack.cli("rollout", check=False, timeout=900)
    finally:
        set_env_value(stack, "POSTGRES_DB", old_db)
    assert result.returncode == 1, result.stdout
    assert "rollout stopped at" in result.stderr and "prefect-api" in result.stderr, result.stderr
    assert "the old containers keep serving" in result.stderr
    assert sorted(row["Name"] for row in stack.containers("prefect-api")) == before
    assert httpx.get(f"{stack.lb}/api/ready", timeout=10).status_code == 200


def test_web_uis_in_a_browser(stack, browser, client_home):
    check_prefect_ui(browser, stack, client_home, "compose-http")
    check_pgadmin(browser, f"http://127.0.0.1:{stack.env['PGADMIN_PORT']}", stack.env, "compose")
    check_redis_ui(browser, f"http://127.0.0.1:{stack.env['ARDM_PORT']}", stack.env, "compose")


def test_tls_override_serves_the_ui_over_https(stack, playwright, client_home):
    """TLS as a user turns it on: TLS_SELF_SIGNED=true, `prefectstack tls`, the TLS
    override in COMPOSE_FILE, `docker compose up -d`; the browser trusts the CA."""
    set_env_value(stack, "TLS_SELF_SIGNED", "true")
    set_env_value(stack, "COMPOSE_FILE", f"{stack.env['COMPOSE_FILE']}:docker-compose.tls.yml")
    made = Stack.cli(stack, "tls")  # reads .env only: no --mode
    assert str(stack.tls_ca) in made.stdout
    stack.compose("up", "-d", "--wait", "--wait-timeout", "600")
    plain = httpx.get(f"http://127.0.0.1:{stack.env['PREFECT_PORT']}/api/health", timeout=10)
    assert plain.status_code == 301 and plain.headers["location"].startswith("https://")
    with chromium(playwright, trust=stack.tls_ca) as b:
        check_prefect_ui(b, stack, client_home, "compose-tls")
    rows = json.loads(stack.cli("doctor", "--json", check=False).stdout)
    assert {r["name"]: r["status"] for r in rows}["load balancer"] == "pass"


def test_down_keeps_the_data_and_down_v_removes_it(stack, client_home):
    run_id = stack.run_flow("etl.py", "1", home=client_home)["flow_run_id"]
    stack.compose("down", "--timeout", "20")
    stack.compose("up", "-d", "--wait", "--wait-timeout", "600")
    with stack.client() as client:
        assert client.get(f"/flow_runs/{run_id}").json()["state_type"] == "COMPLETED"
    assert f"{stack.project}_postgres-data" in stack.volumes()
    stack.compose("down", "-v", "--timeout", "20")
    assert stack.volumes() == []
