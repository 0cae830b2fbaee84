"""Grafana dashboards as code.

The committed JSON under deploy/grafana/dashboards/ is generated from this
module by `prefectstack generate`; a test fails when it is stale, and another
runs every panel's PromQL against a live Prometheus.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
DASHBOARD_DIR = Path("grafana") / "dashboards"  # under deploy/
RATE = "$__rate_interval"


@dataclass
class Panel:
    title: str
    exprs: list[tuple[str, str]]  # (PromQL, legend)
    kind: str = "timeseries"  # timeseries | stat | bargauge
    unit: str = "short"
    width: int = 12
    height: int = 8
    description: str = ""
    thresholds: list[tuple[float, str]] = field(default_factory=list)


@dataclass
class Row:
    title: str
    panels: list[Panel]


def _panel_json(panel: Panel, pid: int, x: int, y: int) -> dict:
    steps = [{"color": "green", "value": None}] + [
        {"color": colour, "value": value} for value, colour in panel.thresholds
    ]
    body: dict = {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {
            "defaults": {
                "unit": panel.unit,
                "thresholds": {"mode": "absolute", "steps": steps},
            },
            "overrides": [],
        },
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": expr,
                "legendFormat": legend,
                "instant": panel.kind != "timeseries",
                "range": panel.kind == "timeseries",
            }
            for i, (expr, legend) in enumerate(panel.exprs)
        ],
        "options": {"reduceOptions": {"calcs": ["lastNotNull"]}},
    }
    return body


def dashboard(uid: str, title: str, rows: list[Row], variables: list[dict]) -> dict:
    panels, pid, y = [], 1, 0
    for row in rows:
        panels.append(
            {
                "id": pid,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        pid, y, x, row_height = pid + 1, y + 1, 0, 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y, row_height = 0, y + row_height, 0
            panels.append(_panel_json(panel, pid, x, y))
            pid, x, row_height = pid + 1, x + panel.width, max(row_height, panel.height)
        y += row_height
    return {
        "uid": uid,
        "title": title,
        "tags": ["prefectstack"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "templating": {"list": [DATASOURCE_VARIABLE, *variables]},
        "annotations": {"list": []},
        "panels": panels,
    }


DATASOURCE_VARIABLE = {
    "name": "datasource",
    "label": "Data source",
    "type": "datasource",
    "query": "prometheus",
    "current": {"text": "Prometheus", "value": "prometheus"},
    "hide": 0,
}
ROUTE_VARIABLE = {
    "name": "route",
    "label": "API route",
    "type": "query",
    "datasource": DATASOURCE,
    "query": {"query": "label_values(nginx_http_requests_total, route)", "refId": "route"},
    "definition": "label_values(nginx_http_requests_total, route)",
    "includeAll": True,
    "allValue": ".*",
    "multi": True,
    "current": {"text": "All", "value": "$__all"},
    "refresh": 2,
    "sort": 1,
}


def _quantiles(metric: str, by: str, matcher: str) -> list[tuple[str, str]]:
    return [
        (
            f"histogram_quantile({q}, sum by (le, {by}) "
            f"(rate({metric}_bucket{{{matcher}}}[{RATE}])))",
            f"p{int(q * 100)} {{{{{by}}}}}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def overview() -> dict:
    api = 'route=~"$route", route!="(ui)"'
    return dashboard(
        "prefectstack-overview",
        "Prefect stack: overview",
        [
            Row(
                "Health",
                [
                    Panel(
                        "API replicas up",
                        [('sum(up{job="prefect-api"})', "up")],
                        kind="stat",
                        width=3,
                        height=5,
                        thresholds=[(0, "red"), (1, "green")],
                    ),
                    Panel(
                        "Load balancer 5xx ratio",
                        [
                            (
                                '(sum(rate(nginx_http_requests_total{status_class="5xx"}[5m])) '
                                "or vector(0)) / sum(rate(nginx_http_requests_total[5m]))",
                                "5xx",
                            )
                        ],
                        kind="stat",
                        unit="percentunit",
                        width=3,
                        height=5,
                        thresholds=[(0.01, "orange"), (0.05, "red")],
                    ),
                    Panel(
                        "Late flow runs",
                        [("prefectstack_flow_runs_late", "late")],
                        kind="stat",
                        width=3,
                        height=5,
                        thresholds=[(1, "orange")],
                    ),
                    Panel(
                        "Stuck background task runs",
                        [("prefectstack_background_task_runs_stuck", "stuck")],
                        kind="stat",
                        width=3,
                        height=5,
                        thresholds=[(1, "orange")],
                    ),
                    Panel(
                        "Background-services processes",
                        [("prefectstack_background_services_live", "live")],
                        kind="stat",
                        width=3,
                        height=5,
                        thresholds=[(0, "red"), (1, "green")],
                    ),
                    Panel(
                        "Newest backup age",
                        [("time() - prefectstack_backup_newest_timestamp_seconds", "age")],
                        kind="stat",
                        unit="s",
                        width=3,
                        height=5,
                        thresholds=[(26 * 3600, "orange"), (36 * 3600, "red")],
                    ),
                    Panel(
                        "Monitoring targets down",
                        [("count(up == 0) or vector(0)", "down")],
                        kind="stat",
                        width=3,
                        height=5,
                        thresholds=[(1, "red")],
                    ),
                    Panel(
                        "Firing alerts",
                        [('count(ALERTS{alertstate="firing"}) or vector(0)', "firing")],
                        kind="stat",
                        width=3,
                        height=5,
                        thresholds=[(1, "red")],
                    ),
                    Panel(
                        "Flow runs by state",
                        [("prefectstack_flow_runs", "{{state_type}}")],
                        kind="bargauge",
                        width=12,
                        height=8,
                    ),
                    Panel(
                        "Flow runs finishing, per minute",
                        [
                            (
                                "sum by (state_type) (delta(prefectstack_flow_runs{state_type=~"
                                '"COMPLETED|FAILED|CRASHED|CANCELLED"}[5m])) / 5',
                                "{{state_type}}",
                            )
                        ],
                        width=12,
                        height=8,
                    ),
                ],
            ),
            Row(
                "Database connections (pool exhaustion)",
                [
                    Panel(
                        "Connections in use vs max_connections",
                        [
                            ("sum(pg_connections_by_application_count)", "in use"),
                            ("max(pg_settings_max_connections)", "max_connections"),
                        ],
                        description="Alert at 80 %: every pool would then soon wait.",
                    ),
                    Panel(
                        "Connections per process (application_name)",
                        [
                            (
                                "sum by (application_name) (pg_connections_by_application_count)",
                                "{{application_name}}",
                            )
                        ],
                    ),
                ],
            ),
            Row(
                "Redis (memory and queues)",
                [
                    Panel(
                        "Memory used vs limit",
                        [
                            ("redis_memory_used_bytes", "used"),
                            ("redis_memory_max_bytes", "maxmemory"),
                        ],
                        unit="bytes",
                        width=8,
                    ),
                    Panel("Stream length", [("redis_stream_length", "{{stream}}")], width=8),
                    Panel(
                        "Pending messages per consumer group",
                        [("redis_stream_group_messages_pending", "{{stream}}/{{group}}")],
                        width=8,
                    ),
                ],
            ),
            Row(
                "API response times (at the load balancer)",
                [
                    Panel(
                        "Request rate by route",
                        [
                            (
                                f"sum by (route) "
                                f"(rate(nginx_http_requests_total{{{api}}}[{RATE}]))",
                                "{{route}}",
                            )
                        ],
                        unit="reqps",
                    ),
                    Panel(
                        "Requests by status class",
                        [
                            (
                                f"sum by (status_class) (rate(nginx_http_requests_total[{RATE}]))",
                                "{{status_class}}",
                            )
                        ],
                        unit="reqps",
                    ),
                    Panel(
                        "Latency p50 / p95 / p99 per route",
                        _quantiles("nginx_http_request_duration_seconds", "route", api),
                        unit="s",
                        width=24,
                        height=10,
                    ),
                ],
            ),
            Row(
                "Background services lag",
                [
                    Panel(
                        "Event received -> persisted",
                        [("prefectstack_event_persist_lag_seconds", "quantile {{quantile}}")],
                        unit="s",
                        width=8,
                        description="recorded - received of events of the last 5 minutes.",
                    ),
                    Panel(
                        "Oldest undelivered message per consumer group",
                        [
                            (
                                "prefectstack_stream_group_oldest_undelivered_age_seconds",
                                "{{stream}}/{{group}}",
                            )
                        ],
                        unit="s",
                        width=8,
                    ),
                    Panel(
                        "Oldest unacknowledged message per consumer group",
                        [
                            (
                                "prefectstack_stream_group_oldest_pending_age_seconds",
                                "{{stream}}/{{group}}",
                            )
                        ],
                        unit="s",
                        width=8,
                    ),
                ],
            ),
            Row(
                "Data safety and growth",
                [
                    Panel(
                        "Last WAL segment archived",
                        [
                            (
                                "time() - prefectstack_wal_archive_last_success_timestamp_seconds",
                                "age",
                            )
                        ],
                        kind="stat",
                        unit="s",
                        width=6,
                        description="At most about WAL_ARCHIVE_TIMEOUT on a stack that writes; "
                        "a point-in-time restore reaches the last archived segment.",
                    ),
                    Panel(
                        "WAL archiving failing / waiting segments",
                        [
                            ("prefectstack_wal_archive_failing", "failing"),
                            ("prefectstack_wal_archive_waiting_segments", "waiting"),
                        ],
                        kind="stat",
                        width=6,
                        thresholds=[(0, "green"), (1, "red")],
                    ),
                    Panel(
                        "Recoverable window",
                        [
                            (
                                "time() - prefectstack_recovery_window_start_timestamp_seconds",
                                "reaches back",
                            ),
                            (
                                "time() - prefectstack_recovery_window_end_timestamp_seconds",
                                "newest point, age",
                            ),
                        ],
                        kind="stat",
                        unit="s",
                        width=6,
                        description="How far back `restore --to-time` reaches (oldest base "
                        "backup), and how old the newest point it reaches is.",
                    ),
                    Panel(
                        "Newest base backup, age",
                        [
                            (
                                "time() - prefectstack_pgbackrest_backup_newest_timestamp_seconds",
                                "{{kind}}",
                            )
                        ],
                        kind="stat",
                        unit="s",
                        width=6,
                    ),
                    Panel(
                        "Database size",
                        [("prefectstack_database_size_bytes", "database")],
                        unit="bytes",
                        width=8,
                    ),
                    Panel(
                        "Largest tables",
                        [("topk(8, prefectstack_table_size_bytes)", "{{table}}")],
                        unit="bytes",
                        width=8,
                        description="Events, logs and flow runs grow until the retention "
                        "in .env deletes them.",
                    ),
                    Panel(
                        "Free space",
                        [
                            (
                                "prefectstack_filesystem_avail_bytes"
                                " / prefectstack_filesystem_size_bytes",
                                "{{volume}}",
                            )
                        ],
                        unit="percentunit",
                        width=8,
                        thresholds=[(0, "red"), (0.1, "yellow"), (0.25, "green")],
                    ),
                ],
            ),
        ],
        [ROUTE_VARIABLE],
    )


def replicas() -> dict:
    return dashboard(
        "prefectstack-replicas",
        "Prefect stack: API replicas and processes",
        [
            Row(
                "Per replica",
                [
                    Panel(
                        "Requests per replica",
                        [
                            (
                                f"sum by (upstream) "
                                f"(rate(nginx_http_upstream_requests_total[{RATE}]))",
                                "{{upstream}}",
                            )
                        ],
                        unit="reqps",
                    ),
                    Panel(
                        "Latency per replica",
                        _quantiles("nginx_http_upstream_duration_seconds", "upstream", ""),
                        unit="s",
                    ),
                    Panel(
                        "Resident memory",
                        [('process_resident_memory_bytes{job="prefect-api"}', "{{instance}}")],
                        unit="bytes",
                    ),
                    Panel(
                        "CPU",
                        [
                            (
                                f'rate(process_cpu_seconds_total{{job="prefect-api"}}[{RATE}])',
                                "{{instance}}",
                            )
                        ],
                        unit="percentunit",
                    ),
                    Panel(
                        "Open file descriptors (connections, websockets)",
                        [('process_open_fds{job="prefect-api"}', "{{instance}}")],
                    ),
                    Panel(
                        "nginx connections",
                        [
                            ("nginx_connections_active", "active"),
                            ("nginx_connections_waiting", "waiting"),
                        ],
                    ),
                ],
            ),
            Row(
                "Work pools and workers",
                [
                    Panel("Workers by status", [("prefectstack_workers", "{{pool}} {{status}}")]),
                    Panel(
                        "Seconds since the freshest worker heartbeat",
                        [("prefectstack_work_pool_last_heartbeat_age_seconds", "{{pool}}")],
                        unit="s",
                    ),
                    Panel("Work queues by status", [("prefectstack_work_queues", "{{status}}")]),
                    Panel("Deployments", [("prefectstack_deployments", "paused={{paused}}")]),
                ],
            ),
        ],
        [],
    )


DASHBOARDS = {"overview.json": overview, "replicas.json": replicas}


def render(builder) -> str:
    return json.dumps(builder(), indent=2, sort_keys=True) + "\n"


def panel_queries(board: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel."""
    return [
        (panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]
