"""Prometheus exporter for what Prefect itself does not expose.

Prefect 3.9's /api/metrics has process counters only. This exporter adds, per
scrape: flow runs by state type and late runs, deployments, work pool / queue /
worker health (last heartbeat / poll), the age of the newest backup, the
background services' lag (event received -> persisted, from PostgreSQL; age of
the oldest undelivered and pending message per Redis consumer group), WAL
archiving and pgBackRest's base backups and recoverable window, and the
database's growth (size, largest tables, free space).

Cost stays small as the database grows: flow runs are counted per state type in
one round trip of index-only scans (ix_flow_run__state_type, __state_name),
about 15 ms at 100k runs where ten /api/flow_runs/count calls took ~180 ms
(`prefectstack bench exporter` prints the figure); the lag query reads the last
five minutes of events through the `occurred` index; no label carries a run id.
Work pools, queues, workers and deployments come from Prefect's REST API.
Each source fails on its own (prefectstack_exporter_source_up) rather than
failing the scrape.

Configuration comes from the environment a Prefect client and server use:
PREFECT_API_URL, PREFECT_API_AUTH_STRING, PREFECT_API_DATABASE_{HOST,PORT,USER,
PASSWORD,NAME}, PREFECT_REDIS_MESSAGING_{HOST,PORT,PASSWORD,DB},
PREFECT_SERVER_DOCKET_URL (live background-services processes), plus
PREFECTSTACK_EXPORTER_{ADDRESS,PORT}, PREFECTSTACK_BACKUP_DIR,
PREFECTSTACK_SERVICES_REPLICAS, PREFECTSTACK_BACKGROUND_TASK_STUCK_SECONDS,
PREFECTSTACK_PGBACKREST_{REPO,STANZA} (pgBackRest's repository, read from its
files) and PREFECTSTACK_DATA_DIR (PostgreSQL's data, for its free space).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse

import httpx
import psycopg
import redis
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..backups import repository
from ..backups.pgbackrest import PgBackRest
from ..health import SERVICE_CONSUMER_GROUPS, live_background_services, stream_backlog
from . import storage
from .background_tasks import stuck_background_task_runs

STATE_TYPES = (
    "SCHEDULED",
    "PENDING",
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "CRASHED",
    "PAUSED",
    "CANCELLING",
)
STREAM_GROUPS = {**SERVICE_CONSUMER_GROUPS, "actions": ("actions",)}
PAGE = 200  # Prefect's largest filter page
STUCK_ENV = "PREFECTSTACK_BACKGROUND_TASK_STUCK_SECONDS"
# recorded - received, over events that occurred in the last five minutes
# (occurred is indexed; recorded is not).
# One indexed count per state type (and the Late state name) in one round trip.
COUNT_SQL = " UNION ALL ".join(
    [f"SELECT '{t}', count(*) FROM flow_run WHERE state_type = '{t}'" for t in STATE_TYPES]
    + ["SELECT 'Late', count(*) FROM flow_run WHERE state_name = 'Late'"]
)
LAG_SQL = """
SELECT coalesce(percentile_cont(0.95) WITHIN GROUP (
           ORDER BY extract(epoch FROM recorded - received)), 0),
       coalesce(max(extract(epoch FROM recorded - received)), 0),
       count(*)
FROM events
WHERE occurred > now() - interval '5 minutes'
"""


def pgbackrest_source(env: dict[str, str]) -> Path | PgBackRest | None:
    """A repository directory to read (PREFECTSTACK_PGBACKREST_REPO), or, for an
    S3 store, pgBackRest: with its configuration file (native mode,
    PREFECTSTACK_PGBACKREST_CONFIG) or its PGBACKREST_* variables (compose,
    docker-compose.s3.yml)."""
    if env.get("PGBACKREST_REPO1_TYPE") == "s3":
        return PgBackRest([], [], env, name="the S3 repository")
    if config := env.get("PREFECTSTACK_PGBACKREST_CONFIG"):
        stanza = env.get("PREFECTSTACK_PGBACKREST_STANZA", "")
        return PgBackRest([], [f"--config={config}", f"--stanza={stanza}"],
                          name="the S3 repository")  # fmt: skip
    return Path(repo) if (repo := env.get("PREFECTSTACK_PGBACKREST_REPO")) else None


@dataclass(frozen=True)
class Config:
    api_url: str
    auth: tuple[str, str] | None
    db: dict | None
    redis: dict | None
    backup_dir: Path | None
    docket_db: int | None = None
    services_expected: int | None = None
    stuck_after_s: float | None = None  # BACKGROUND_TASK_STUCK_SECONDS in .env
    pgbackrest_repo: Path | PgBackRest | None = None  # see repository.status
    stanza: str | None = None
    data_dir: Path | None = None  # PostgreSQL's data directory (free space)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Config:
        env = dict(os.environ if env is None else env)
        auth_string = env.get("PREFECT_API_AUTH_STRING", "")
        user, sep, password = auth_string.partition(":")
        db = None
        if env.get("PREFECT_API_DATABASE_HOST"):
            db = {
                "host": env["PREFECT_API_DATABASE_HOST"],
                "port": int(env.get("PREFECT_API_DATABASE_PORT", "5432")),
                "user": env.get("PREFECT_API_DATABASE_USER", "prefect"),
                "password": env.get("PREFECT_API_DATABASE_PASSWORD", ""),
                "dbname": env.get("PREFECT_API_DATABASE_NAME", "prefect"),
            }
        rds = None
        if env.get("PREFECT_REDIS_MESSAGING_HOST"):
            rds = {
                "host": env["PREFECT_REDIS_MESSAGING_HOST"],
                "port": int(env.get("PREFECT_REDIS_MESSAGING_PORT", "6379")),
                "password": env.get("PREFECT_REDIS_MESSAGING_PASSWORD") or None,
                "db": int(env.get("PREFECT_REDIS_MESSAGING_DB", "0")),
            }
        backups = env.get("PREFECTSTACK_BACKUP_DIR")
        docket_url = env.get("PREFECT_SERVER_DOCKET_URL", "")
        expected = env.get("PREFECTSTACK_SERVICES_REPLICAS")
        return cls(
            api_url=env.get("PREFECT_API_URL", "http://127.0.0.1:4200/api").rstrip("/"),
            auth=(user, password) if sep else None,
            db=db,
            redis=rds,
            backup_dir=Path(backups) if backups else None,
            docket_db=int(urlparse(docket_url).path.lstrip("/") or 0)
            if docket_url.startswith("redis")
            else None,
            services_expected=int(expected) if expected else None,
            stuck_after_s=float(stuck) if (stuck := env.get(STUCK_ENV)) else None,
            pgbackrest_repo=pgbackrest_source(env),
            stanza=env.get("PREFECTSTACK_PGBACKREST_STANZA"),
            data_dir=Path(data) if (data := env.get("PREFECTSTACK_DATA_DIR")) else None,
        )


def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"prefectstack_{name}", doc, labels=list(labels))


class PrefectCollector(Collector):
    def __init__(self, config: Config):
        self.config = config

    def describe(self) -> list[Metric]:
        # Nothing up front: registering must not trigger a scrape.
        return []

    # --- Prefect API --------------------------------------------------------------
    async def _api(self) -> list[Metric]:
        async with httpx.AsyncClient(
            base_url=self.config.api_url, auth=self.config.auth, timeout=10
        ) as client:

            async def post(path: str, body: dict | None = None):
                resp = await client.post(path, json=body or {})
                resp.raise_for_status()
                return resp.json()

            async def paged(path: str) -> list[dict]:
                rows, offset = [], 0
                while True:
                    page = await post(path, {"limit": PAGE, "offset": offset})
                    rows += page
                    if len(page) < PAGE:
                        return rows
                    offset += PAGE

            total, paused, pools, queues = await asyncio.gather(
                post("/deployments/count"),
                post("/deployments/count", {"deployments": {"paused": {"eq_": True}}}),
                paged("/work_pools/filter"),
                paged("/work_queues/filter"),
            )
            workers = await asyncio.gather(
                *(paged(f"/work_pools/{p['name']}/workers/filter") for p in pools)
            )

        now = time.time()
        deployments = gauge("deployments", "Deployments.", ("paused",))
        deployments.add_metric(["false"], total - paused)
        deployments.add_metric(["true"], paused)

        pool_status = gauge(
            "work_pool_status", "1 for the current status of each work pool.", ("pool", "status")
        )
        worker_count = gauge("workers", "Workers by pool and status.", ("pool", "status"))
        heartbeat = gauge(
            "work_pool_last_heartbeat_age_seconds",
            "Seconds since the freshest worker heartbeat of each pool.",
            ("pool",),
        )
        for pool, pool_workers in zip(pools, workers, strict=True):
            name = pool["name"]
            for status in ("READY", "NOT_READY", "PAUSED"):
                pool_status.add_metric([name, status], 1 if pool.get("status") == status else 0)
            by_status = Counter(w.get("status", "OFFLINE") for w in pool_workers)
            for status in ("ONLINE", "OFFLINE"):
                worker_count.add_metric([name, status], by_status.get(status, 0))
            beats = [_ts(w.get("last_heartbeat_time")) for w in pool_workers]
            beats = [b for b in beats if b]
            if beats:
                heartbeat.add_metric([name], max(0.0, now - max(beats)))

        queue_count = gauge("work_queues", "Work queues by status.", ("status",))
        for status, n in Counter(q.get("status") or "UNKNOWN" for q in queues).items():
            queue_count.add_metric([status], n)
        polled = gauge(
            "work_queue_last_polled_age_seconds",
            "Seconds since each work queue was last polled by a worker.",
            ("pool", "queue"),
        )
        for queue in queues:
            last = _ts(queue.get("last_polled"))
            if last:
                polled.add_metric(
                    [queue.get("work_pool_name") or "", queue["name"]], max(0.0, now - last)
                )
        return [deployments, pool_status, worker_count, heartbeat, queue_count, polled]

    # --- PostgreSQL: flow runs, event persistence lag ----------------------------------
    def _database(self) -> list[Metric]:
        with psycopg.connect(
            **self.config.db, connect_timeout=5, application_name="prefectstack-exporter"
        ) as conn:
            counts = dict(conn.execute(COUNT_SQL).fetchall())
            p95, worst, n = conn.execute(LAG_SQL).fetchone()
            stuck_rows = (
                stuck_background_task_runs(conn, self.config.stuck_after_s)
                if self.config.stuck_after_s is not None
                else None
            )
        runs = gauge("flow_runs", "Flow runs in the database by state type.", ("state_type",))
        for state in STATE_TYPES:
            runs.add_metric([state], counts[state])
        late = gauge("flow_runs_late", "Flow runs in the Late state (scheduled, not started).")
        late.add_metric([], counts["Late"])
        lag = gauge(
            "event_persist_lag_seconds",
            "Event received by the API -> persisted by the background services, over "
            "events of the last 5 minutes.",
            ("quantile",),
        )
        lag.add_metric(["0.95"], float(p95))
        lag.add_metric(["1"], float(worst))
        recent = gauge("events_recent", "Events that occurred in the last 5 minutes.")
        recent.add_metric([], n)
        if stuck_rows is None:
            return [runs, late, lag, recent]
        stuck = gauge(
            "background_task_runs_stuck",
            "Background task runs (task.delay()) SCHEDULED for longer than "
            "BACKGROUND_TASK_STUCK_SECONDS: no task worker took them.",
        )
        stuck.add_metric([], sum(r.runs for r in stuck_rows))
        oldest = gauge(
            "background_task_run_stuck_oldest_age_seconds",
            "How long the oldest stuck background task run has been due (0: none).",
        )
        oldest.add_metric([], max((r.oldest_age_s for r in stuck_rows), default=0.0))
        return [runs, late, lag, recent, stuck, oldest]

    # --- Redis: consumer group backlog age ------------------------------------------------
    def _redis(self) -> list[Metric]:
        client = redis.Redis(**self.config.redis, socket_timeout=5, decode_responses=True)
        pending_age = gauge(
            "stream_group_oldest_pending_age_seconds",
            "Age of the oldest message delivered to a consumer group but not yet acknowledged.",
            ("stream", "group"),
        )
        undelivered_age = gauge(
            "stream_group_oldest_undelivered_age_seconds",
            "Age of the oldest stream message a consumer group has not read yet.",
            ("stream", "group"),
        )
        try:
            for row in stream_backlog(client, STREAM_GROUPS):
                pending_age.add_metric([row.stream, row.group], row.oldest_pending_age_s)
                undelivered_age.add_metric([row.stream, row.group], row.oldest_undelivered_age_s)
        finally:
            client.close()
        return [pending_age, undelivered_age, *self._services()]

    def _services(self) -> list[Metric]:
        if self.config.docket_db is None:
            return []
        docket = redis.Redis(
            **{**self.config.redis, "db": self.config.docket_db},
            socket_timeout=5,
            decode_responses=True,
        )
        live = gauge(
            "background_services_live",
            "Background-services processes whose docket worker heartbeat is fresh.",
        )
        try:
            live.add_metric([], live_background_services(docket))
        finally:
            docket.close()
        metrics = [live]
        if self.config.services_expected is not None:
            expected = gauge(
                "background_services_expected",
                "Background-services processes the stack runs (PREFECT_SERVICES_REPLICAS).",
            )
            expected.add_metric([], self.config.services_expected)
            metrics.append(expected)
        return metrics

    # --- backups -----------------------------------------------------------------------
    def _backups(self) -> list[Metric]:
        newest = gauge(
            "backup_newest_timestamp_seconds",
            "Modification time of the newest PostgreSQL backup.",
        )
        files = gauge("backup_files", "Backup files by retention folder.", ("folder",))
        stamps = []
        for folder in ("last", "daily", "weekly", "monthly"):
            found = [
                p
                for p in (self.config.backup_dir / folder).glob("*.sql.gz")
                if not p.is_symlink() and "-latest" not in p.name
            ]
            files.add_metric([folder], len(found))
            stamps += [p.stat().st_mtime for p in found]
        if stamps:
            newest.add_metric([], max(stamps))
        return [newest, files]

    # --- WAL archiving and pgBackRest's repository ----------------------------------------
    def _archiving(self) -> list[Metric]:
        with psycopg.connect(
            **self.config.db, connect_timeout=5, application_name="prefectstack-exporter"
        ) as conn:
            status = storage.archiver_status(conn)
        failing = gauge(
            "wal_archive_failing", "1 if PostgreSQL's last attempt to archive WAL failed."
        )
        failing.add_metric([], int(status.failing))
        failures = gauge(
            "wal_archive_failures", "Failed archive attempts since the statistics reset."
        )
        failures.add_metric([], status.failed)
        waiting = gauge("wal_archive_waiting_segments", "WAL segments waiting to be archived.")
        waiting.add_metric([], status.waiting)
        lag = gauge("wal_archive_lag_seconds", "How long the oldest waiting segment has waited.")
        lag.add_metric([], status.lag_s())
        timeout = gauge("wal_archive_timeout_seconds", "PostgreSQL's archive_timeout.")
        timeout.add_metric([], status.timeout_s)
        last = gauge(
            "wal_archive_last_success_timestamp_seconds", "When a segment was last archived."
        )
        if status.last_archived_at:
            last.add_metric([], status.last_archived_at.timestamp())
        metrics = [failing, failures, waiting, lag, timeout, last]
        if self.config.pgbackrest_repo and self.config.stanza:
            repo = repository.status(self.config.pgbackrest_repo, self.config.stanza)
            newest = gauge(
                "pgbackrest_backup_newest_timestamp_seconds",
                "End of the newest pgBackRest base backup of each kind.",
                ("kind",),
            )
            for kind in ("full", "diff", "incr"):
                if backup := repo.newest(kind):
                    newest.add_metric([kind], backup.stopped.timestamp())
            count = gauge("pgbackrest_backups", "pgBackRest base backups in the repository.")
            count.add_metric([], len(repo.backups))
            start = gauge("recovery_window_start_timestamp_seconds",
                          "The earliest time a point-in-time restore can reach.")  # fmt: skip
            end = gauge("recovery_window_end_timestamp_seconds",
                        "The latest time a point-in-time restore can reach.")  # fmt: skip
            if repo.window:
                start.add_metric([], repo.window[0].timestamp())
                end.add_metric([], repo.window[1].timestamp())
            metrics += [newest, count, start, end]
        return metrics

    # --- database growth and free space ------------------------------------------------
    def _storage(self) -> list[Metric]:
        with psycopg.connect(
            **self.config.db, connect_timeout=5, application_name="prefectstack-exporter"
        ) as conn:
            size = storage.database_size(conn)
            tables = storage.largest_tables(conn)
        db_size = gauge("database_size_bytes", "Size of the Prefect database.")
        db_size.add_metric([], size)
        table_bytes = gauge(
            "table_size_bytes", "Largest tables, with indexes and TOAST.", ("table",)
        )
        table_rows = gauge("table_rows", "Live rows of the largest tables (estimate).", ("table",))
        for name, rows, nbytes in tables:
            table_bytes.add_metric([name], nbytes)
            table_rows.add_metric([name], rows)
        avail = gauge("filesystem_avail_bytes", "Free bytes for the stack's data.", ("volume",))
        total = gauge("filesystem_size_bytes", "Size of the filesystem.", ("volume",))
        for volume, path in (("data", self.config.data_dir), ("backups", self.config.backup_dir)):
            if path is not None and path.exists():
                free, whole = storage.filesystem(path)
                avail.add_metric([volume], free)
                total.add_metric([volume], whole)
        return [db_size, table_bytes, table_rows, avail, total]

    # --- collect -------------------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        up = gauge("exporter_source_up", "1 if the source answered this scrape.", ("source",))
        sources = {
            "api": lambda: asyncio.run(self._api()),
            "database": self._database if self.config.db else None,
            "redis": self._redis if self.config.redis else None,
            "backups": self._backups if self.config.backup_dir else None,
            "archiving": self._archiving if self.config.db else None,
            "storage": self._storage if self.config.db else None,
        }
        for source, fetch in sources.items():
            if fetch is None:
                continue
            try:
                metrics = fetch()
            except Exception as exc:
                up.add_metric([source], 0)
                print(f"exporter: {source} failed: {type(exc).__name__}: {exc}", flush=True)
                continue
            up.add_metric([source], 1)
            yield from metrics
        yield up
        took = gauge("exporter_scrape_duration_seconds", "Time this scrape took.")
        took.add_metric([], time.perf_counter() - started)
        yield took


def _ts(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def serve(address: str, port: int, config: Config) -> None:
    """Serve /metrics until interrupted."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(PrefectCollector(config))
    server, thread = start_http_server(port, addr=address, registry=registry)
    print(f"prefectstack exporter on http://{address}:{port}/metrics", flush=True)
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()
