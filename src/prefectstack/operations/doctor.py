"""`prefectstack doctor`: live checks of a running stack, pass / warn / fail."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import redis

from .. import health
from ..backups import repository
from ..backups.layout import listing
from ..backups.pgbackrest import BackRestError, PgBackRest
from ..monitoring import storage
from ..monitoring.background_tasks import stuck_background_task_runs
from ..monitoring.exporter import STREAM_GROUPS, STUCK_ENV, pgbackrest_source
from ..releases import migrations
from ..settings import StackSettings

LOOPBACK = "127.0.0.1"
LAG_WARN_S, LAG_FAIL_S = 60, 300
BACKUP_WARN_S = 36 * 3600
# Segments may wait up to archive_timeout before PostgreSQL hands them over;
# longer than a few of those and the archive is behind.
ARCHIVE_LAG_FACTOR = 3
REDIS_MEMORY_WARN = 0.8
# prefect-redis moves a message whose handler failed more than
# PREFECT_REDIS_MESSAGING_CONSUMER_MAX_RETRIES times here (a set of hash keys).
DEAD_LETTERS = "dlq"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # pass | warn | fail
    detail: str

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def installed_migrations_dir() -> Path:
    """The PostgreSQL migrations of the Prefect this process imports."""
    import prefect.server.database as database

    return Path(database.__file__).parent / "_migrations" / "versions" / "postgresql"


def native_migrations_dir(s: StackSettings) -> Path:
    """Those of the release the native stack runs (its own environment)."""
    from ..releases import runtime

    if runtime.ready(s.prefect_version):
        return runtime.migrations_dir(s.prefect_version)
    return installed_migrations_dir()


def _probe(name: str, fn: Callable[[], health.Probe]) -> Check:
    probe = fn()
    return Check(name, "pass" if probe else "fail", probe.detail)


@dataclass(frozen=True)
class Targets:
    """Where each component of a stack answers, as seen from where doctor runs."""

    lb_url: str
    lb_verify: bool  # False for a TLS listener checked for being up (see health.http_ok)
    replicas: list[tuple[str, str]]  # (name, /api/ready URL)
    postgres: dict
    redis: dict
    prometheus_url: str
    backup_dir: Path | None
    db: str
    docket_db: int
    services_expected: int
    stuck_after_s: float
    schema_dir: Path  # the running release's migrations: what "at head" means
    pgbackrest_repo: Path | PgBackRest | None = None  # see repository.status
    stanza: str | None = None

    @classmethod
    def native(cls, s: StackSettings) -> Targets:
        from ..native import archiving
        from ..native.layout import Layout

        return cls(
            lb_url=s.lb_url,
            lb_verify=not s.tls,
            replicas=[
                (f"api-{i}", f"http://{LOOPBACK}:{port}/api/ready")
                for i, port in enumerate(s.api_ports, start=1)
            ],
            postgres={
                "host": LOOPBACK,
                "port": s.postgres_port,
                "user": s.postgres_user,
                "password": s.postgres_password.get_secret_value(),
                "dbname": s.postgres_db,
            },
            redis={
                "host": LOOPBACK,
                "port": s.prefect_redis_messaging_port,
                "password": s.redis_password.get_secret_value(),
                "db": s.prefect_redis_messaging_db,
            },
            prometheus_url=f"http://{LOOPBACK}:{s.prometheus_port}",
            backup_dir=s.backup_dir,
            db=s.postgres_db,
            docket_db=s.prefect_docket_redis_db,
            services_expected=s.prefect_services_replicas,
            stuck_after_s=s.background_task_stuck_seconds,
            schema_dir=native_migrations_dir(s),
            pgbackrest_repo=archiving.repository_source(Layout(s.state_dir), s),
            stanza=s.project_name,
        )

    @classmethod
    def from_container_env(cls, env: dict[str, str]) -> Targets:
        """Inside the compose network (the prefect-exporter container): the
        servers' own PREFECT_* settings, replicas found through Docker's DNS."""
        import socket
        from urllib.parse import urlparse

        addresses = sorted({info[4][0] for info in socket.getaddrinfo("prefect-api", 4200)})
        redis_settings = {
            "host": env["PREFECT_REDIS_MESSAGING_HOST"],
            "port": int(env["PREFECT_REDIS_MESSAGING_PORT"]),
            "password": env.get("PREFECT_REDIS_MESSAGING_PASSWORD", ""),
        }
        docket_db = int(urlparse(env["PREFECT_SERVER_DOCKET_URL"]).path.lstrip("/") or 0)
        messaging_db = int(env.get("PREFECT_REDIS_MESSAGING_DB", "0"))
        return cls(
            # nginx's internal listener (plain HTTP, whatever the public one serves).
            lb_url=env.get("PREFECTSTACK_LB_URL", "http://nginx:8080"),
            lb_verify=True,
            replicas=[(f"prefect-api {a}", f"http://{a}:4200/api/ready") for a in addresses],
            postgres={
                "host": env["PREFECT_API_DATABASE_HOST"],
                "port": int(env["PREFECT_API_DATABASE_PORT"]),
                "user": env["PREFECT_API_DATABASE_USER"],
                "password": env["PREFECT_API_DATABASE_PASSWORD"],
                "dbname": env["PREFECT_API_DATABASE_NAME"],
            },
            redis={**redis_settings, "db": messaging_db},
            prometheus_url="http://prometheus:9090",
            backup_dir=Path(env.get("PREFECTSTACK_BACKUP_DIR", "/backups")),
            db=env["PREFECT_API_DATABASE_NAME"],
            docket_db=docket_db,
            services_expected=int(env.get("PREFECTSTACK_SERVICES_REPLICAS", "1")),
            stuck_after_s=float(env[STUCK_ENV]),
            schema_dir=installed_migrations_dir(),
            pgbackrest_repo=pgbackrest_source(env),
            stanza=env.get("PREFECTSTACK_PGBACKREST_STANZA"),
        )


def _postgres(t: Targets) -> list[Check]:
    try:
        with psycopg.connect(
            **t.postgres, connect_timeout=5, application_name="prefectstack-doctor"
        ) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            trgm = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'").fetchone()
            current = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            used, limit = conn.execute(
                "SELECT count(*), current_setting('max_connections')::int FROM pg_stat_activity"
            ).fetchone()
            stuck = stuck_background_task_runs(conn, t.stuck_after_s) if current else []
            archiver = storage.archiver_status(conn)
    except psycopg.Error as exc:
        return [Check("postgres", "fail", str(exc).strip().splitlines()[0])]
    head = migrations.head(t.schema_dir)
    at_head = current is not None and current[0] == head
    return [
        Check("postgres", "pass", f"PostgreSQL {version}, {used}/{limit} connections"),
        Check(
            "postgres: pg_trgm",
            "pass" if trgm else "fail",
            "installed" if trgm else "missing: CREATE EXTENSION pg_trgm",
        ),
        Check(
            "postgres: migrations",
            "pass" if at_head else "fail",
            f"at head {head}"
            if at_head
            else f"at {current[0] if current else 'none'}, head is {head}: run the migrate service",
        ),
        _stuck_tasks(stuck, t.stuck_after_s),
        _archiving(archiver),
    ]


def _archiving(a: storage.ArchiverStatus) -> Check:
    name = "postgres: WAL archiving"
    if a.mode != "on":
        return Check(name, "fail", f"archive_mode is {a.mode}: no point-in-time restore")
    if a.failing:
        return Check(
            name,
            "fail",
            f"the last attempt failed ({a.last_failed_wal}, {_ago(a.last_failed_at)}); "
            f"{a.failed} failures since the statistics reset; {a.waiting} segment(s) wait: "
            "see PostgreSQL's log (archive command)",
        )
    last = (
        f"last segment archived {_ago(a.last_archived_at)}"
        if a.last_archived_at
        else "nothing archived yet"
    )
    lag = a.lag_s()
    if lag > ARCHIVE_LAG_FACTOR * a.timeout_s:
        return Check(name, "warn", f"{a.waiting} segment(s) wait, the oldest {lag:.0f}s; {last}")
    return Check(name, "pass", f"{last}, {a.waiting} waiting (archive_timeout {a.timeout_s}s)")


def _ago(when) -> str:
    return f"{(datetime.now(UTC) - when).total_seconds():.0f}s ago"


def _pgbackrest(t: Targets) -> list[Check]:
    if t.pgbackrest_repo is None or t.stanza is None:
        return []
    try:
        repo = repository.status(t.pgbackrest_repo, t.stanza)
    except (OSError, ValueError, KeyError, BackRestError) as exc:
        return [Check("pgbackrest", "fail", f"{t.pgbackrest_repo}: {type(exc).__name__}: {exc}")]
    if not repo.backups:
        detail = f"none in {t.pgbackrest_repo} yet: `prefectstack backup --kind full`"
        return [Check("pgbackrest: base backups", "fail", detail)]
    newest = repo.backups[-1]
    full = repo.newest("full")
    age = (datetime.now(UTC) - newest.stopped).total_seconds()
    detail = (
        f"{len(repo.backups)} kept; newest {newest.kind} {age / 3600:.1f} h old"
        + (f", newest full {(datetime.now(UTC) - full.stopped).total_seconds() / 3600:.1f} h old"
           if full else "")
    )  # fmt: skip
    start, end = repo.window
    return [
        Check("pgbackrest: base backups", "pass" if age < BACKUP_WARN_S else "warn", detail),
        Check("pgbackrest: recoverable window", "pass",
              f"{start.isoformat(timespec='seconds')} to {end.isoformat(timespec='seconds')}"),
    ]  # fmt: skip


def _stuck_tasks(stuck: list, after_s: float) -> Check:
    name = "background task runs"
    if not stuck:
        return Check(name, "pass", f"none SCHEDULED longer than {after_s:.0f}s")
    keys = ", ".join(f"{r.task_key} ({r.runs})" for r in stuck[:5])
    oldest = max(r.oldest_age_s for r in stuck)
    return Check(
        name,
        "fail",
        f"{sum(r.runs for r in stuck)} SCHEDULED longer than {after_s:.0f}s, oldest "
        f"{oldest:.0f}s: {keys}. Start a task worker serving these tasks (task.serve()); "
        "runs queued before the Redis task queue was enabled must be submitted again",
    )


def _redis(t: Targets) -> list[Check]:
    client = health.redis_client(**t.redis)
    try:
        info = client.info()
        backlog = health.stream_backlog(client, STREAM_GROUPS)
        dead = client.scard(DEAD_LETTERS)
    except redis.RedisError as exc:
        return [Check("redis", "fail", f"{type(exc).__name__}: {exc}")]
    rows = [Check("redis", "pass", f"Redis {info['redis_version']}")]
    aof = info.get("aof_enabled") == 1
    rows.append(
        Check(
            "redis: append-only file",
            "pass" if aof else "fail",
            "on" if aof else "off: Prefect's streams are lost on restart",
        )
    )
    used, limit = info["used_memory"], info.get("maxmemory", 0)
    if limit:
        share = used / limit
        status = "warn" if share > REDIS_MEMORY_WARN else "pass"
        rows.append(
            Check(
                "redis: memory",
                status,
                f"{used / 2**20:.0f} MiB of {limit / 2**20:.0f} MiB ({share:.0%})",
            )
        )
    else:
        rows.append(Check("redis: memory", "warn", "no maxmemory limit"))
    rows.append(
        Check(
            "redis: dead-letter queue",
            "warn" if dead else "pass",
            f"{dead} messages a consumer gave up on (set {DEAD_LETTERS!r}); events among "
            "them are not stored"
            if dead
            else "empty",
        )
    )
    for group in backlog:
        lag = max(group.oldest_pending_age_s, group.oldest_undelivered_age_s)
        if group.consumers == 0 and group.group != "actions":
            status, detail = "fail", "no consumer: the background services are not reading"
        else:
            status = "fail" if lag > LAG_FAIL_S else "warn" if lag > LAG_WARN_S else "pass"
            detail = f"{group.consumers} consumer(s), {group.pending} pending, lag {lag:.0f}s"
        rows.append(Check(f"redis: {group.stream}/{group.group}", status, detail))
    return rows


def _prometheus(t: Targets) -> Check:
    try:
        targets = httpx.get(f"{t.prometheus_url}/api/v1/targets", timeout=5).json()["data"][
            "activeTargets"
        ]
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        return Check("prometheus targets", "warn", f"Prometheus not reachable: {exc}")
    down = [f"{t['labels']['job']} {t['scrapeUrl']}" for t in targets if t["health"] != "up"]
    if down:
        return Check("prometheus targets", "fail", "down: " + ", ".join(down))
    return Check("prometheus targets", "pass", f"all {len(targets)} up")


def _backups(t: Targets) -> Check:
    files = listing(t.backup_dir, t.db) if t.backup_dir and t.backup_dir.exists() else []
    if not files:
        return Check("newest backup", "warn", f"no backup in {t.backup_dir} yet")
    age = time.time() - max(f.mtime for f in files)
    status = "pass" if age < BACKUP_WARN_S else "fail"
    return Check("newest backup", status, f"{age / 3600:.1f} h old")


def _services(t: Targets) -> Check:
    """Degraded (warn) while some processes are down: the others keep scheduling."""
    redis_settings = {k: v for k, v in t.redis.items() if k != "db"}
    try:
        alive = health.live_background_services(
            health.redis_client(**redis_settings, db=t.docket_db)
        )
    except redis.RedisError as exc:
        return Check("background services", "fail", f"{type(exc).__name__}: {exc}")
    status = "pass" if alive >= t.services_expected else "warn" if alive else "fail"
    detail = f"{alive} of {t.services_expected} processes heartbeat on docket"
    return Check("background services", status, detail)


def run(t: Targets) -> list[Check]:
    rows = [
        _probe(
            "load balancer",
            lambda: health.http_ok(f"{t.lb_url}/api/health", verify=t.lb_verify),
        )
    ]
    for name, url in t.replicas:
        rows.append(_probe(f"{name} ready", lambda url=url: health.http_ok(url)))
    rows += _postgres(t)
    rows += _redis(t)
    rows.append(_services(t))
    rows.append(_prometheus(t))
    rows.append(_backups(t))
    rows += _pgbackrest(t)
    return rows
