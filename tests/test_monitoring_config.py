"""Monitoring configuration checked with the real tools: promtool (config, rules,
rule unit tests), amtool, mtail. No running stack needed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from prefectstack.monitoring import config as mon
from prefectstack.monitoring import dashboards
from prefectstack.settings import load_settings

from conftest import REPO, make_env_file

PROM = REPO / "deploy" / "prometheus"
RULES = PROM / "rules" / "prefectstack.yml"
RULE_TESTS = PROM / "tests" / "prefectstack_test.yml"
FIXTURES = Path(__file__).parent / "fixtures"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=False, cwd=REPO)


def test_rules_pass_promtool_check():
    result = run("promtool", "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass():
    result = run("promtool", "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def alert_names() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def test_the_alerts_the_stack_promises_exist():
    assert {
        "PrefectApiReplicaDown",
        "PrefectApiAllReplicasDown",
        "LoadBalancer5xxRatioHigh",
        "ApiLatencyP95High",
        "PostgresConnectionsHigh",
        "RedisMemoryHigh",
        "BackgroundLagHigh",
        "ConsumerGroupStuck",
        "LateFlowRuns",
        "BackupTooOld",
        "PrometheusTargetDown",
    } <= set(alert_names())


@pytest.mark.parametrize("alert", alert_names())
def test_every_alert_has_a_firing_and_a_silent_unit_test(alert):
    cases = [
        case
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case["alertname"] == alert
    ]
    assert any(case["exp_alerts"] for case in cases), f"{alert} never tested firing"
    assert any(not case["exp_alerts"] for case in cases), f"{alert} never tested silent"


def test_compose_prometheus_config_passes_promtool(tmp_path):
    text = (REPO / "deploy" / mon.COMPOSE_PROMETHEUS).read_text()
    # Debian's promtool (2.42) predates basic_auth.username_file (compose runs 3.x).
    assert f"username_file: {mon.COMPOSE_USERNAME_FILE}" in text
    secret = tmp_path / "secret"
    secret.write_text("x")
    text = (
        text.replace(f"username_file: {mon.COMPOSE_USERNAME_FILE}", "username: admin")
        .replace(mon.COMPOSE_PASSWORD_FILE, str(secret))
        .replace("/etc/prometheus/rules", str(PROM / "rules"))
    )
    conf = tmp_path / "prometheus.yml"
    conf.write_text(text)
    result = run("promtool", "check", "config", str(conf))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


def test_native_prometheus_and_alertmanager_configs_pass_the_tools(tmp_path):
    settings = load_settings(make_env_file(tmp_path, ALERT_WEBHOOK_URL="http://hook.test/x"))
    password = tmp_path / "password"
    password.write_text("x")
    prometheus = tmp_path / "prometheus.yml"
    prometheus.write_text(
        mon.native_prometheus(settings, rules_dir=PROM / "rules", password_file=password)
    )
    result = run("promtool", "check", "config", str(prometheus))
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(prometheus.read_text())
    api = next(job for job in config["scrape_configs"] if job["job_name"] == "prefect-api")
    assert [t["labels"]["replica"] for t in api["static_configs"]] == ["api-1", "api-2", "api-3"]
    alertmanager = tmp_path / "alertmanager.yml"
    alertmanager.write_text(mon.native_alertmanager(settings))
    result = run("amtool", "check-config", str(alertmanager))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "http://hook.test/x" in alertmanager.read_text()


def test_compose_scrapes_every_replica_through_docker_dns():
    config = yaml.safe_load((REPO / "deploy" / mon.COMPOSE_PROMETHEUS).read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    api = jobs["prefect-api"]
    assert api["metrics_path"] == "/api/metrics"
    assert api["dns_sd_configs"] == [
        {"names": ["prefect-api"], "type": "A", "port": 4200, "refresh_interval": "15s"}
    ]
    assert {"prefect-exporter", "postgres", "redis", "nginx", "nginx-log"} <= set(jobs)


@pytest.mark.parametrize(
    "path", [mon.COMPOSE_ALERTMANAGER_SILENT, mon.COMPOSE_ALERTMANAGER_WEBHOOK]
)
def test_compose_alertmanager_configs_pass_amtool(path, tmp_path):
    text = (REPO / "deploy" / path).read_text()
    # Debian's amtool (0.25) predates webhook url_file (0.26; compose runs 0.34).
    text = text.replace(f"url_file: {mon.COMPOSE_WEBHOOK_URL_FILE}", 'url: "http://hook.test/"')
    conf = tmp_path / "alertmanager.yml"
    conf.write_text(text)
    result = run("amtool", "check-config", str(conf))
    assert result.returncode == 0, result.stdout + result.stderr


def test_mtail_program_templates_routes(tmp_path):
    result = run(
        "mtail",
        "--progs", str(PROM / "mtail"),
        "--logs", str(FIXTURES / "nginx-metrics.log"),
        "--one_shot", "--one_shot_format", "prometheus",
        "--emit_prog_label=false", "--logtostderr",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    requests = dict(re.findall(r"^nginx_http_requests_total\{(.+)\} (\d+)$", result.stdout, re.M))
    routes = {re.search(r'route="([^"]+)"', labels).group(1) for labels in requests}
    assert routes == {
        "(ui)",
        "/api/flow_runs/{id}",
        "/api/flow_runs/filter",
        "/api/work_pools/{name}/queues/{id}",
        "/api/work_pools/filter",
        "/api/flows/name/{name}",
        "/api/deployments/name/{flow}/{name}",
        "/api/events/out",
        "/api/health",
    }
    assert 'method="POST",route="/api/flow_runs/filter",status_class="5xx"' in requests
    # Websockets (101) count as requests but are no latency sample.
    assert (
        'route="/api/events/out"'
        not in result.stdout.split("nginx_http_request_duration_seconds_bucket")[1].split(
            "nginx_http_requests_total"
        )[0]
    )
    # The first upstream of a retried request is the one measured.
    assert 'nginx_http_upstream_requests_total{status_class="5xx",upstream="127.0.0.1:4202"} 1' in (
        result.stdout
    )


def test_dashboards_have_panels_with_queries():
    for name, builder in dashboards.DASHBOARDS.items():
        queries = dashboards.panel_queries(builder())
        assert len(queries) >= 8, name
        assert all(expr.strip() for _, expr in queries)


def test_overview_answers_the_four_questions():
    titles = " | ".join(title for title, _ in dashboards.panel_queries(dashboards.overview()))
    for needle in (
        "max_connections",
        "per process",
        "Memory used vs limit",
        "Pending messages",
        "Latency p50 / p95 / p99 per route",
        "received -> persisted",
        "API replicas up",
        "5xx",
        "Late",
        "backup",
    ):
        assert needle in titles
