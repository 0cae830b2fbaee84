"""Probes that tell whether one component of the stack answers.

Each returns a Probe result instead of raising, so callers (native `up`,
`status`, `doctor`, compose health checks) can show the reason.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import redis

# Consumer groups the background-services process serves on Redis streams
# (stream -> groups); each gets its consumer when the process starts. (The
# `actions` group gets one only once an automation fires, so it is not listed.)
SERVICE_CONSUMER_GROUPS = {
    "events": ("event-persister", "task-run-recorder", "reactive-triggers"),
}
# Docket's heartbeat set for the services process (`prefect server services
# start` hard-codes the docket name "prefect"); members are "<hostname>#<pid>".
DOCKET_WORKERS_KEY = "prefect:workers"


@dataclass(frozen=True)
class Probe:
    ok: bool
    detail: str = ""

    def __bool__(self) -> bool:
        return self.ok


def http_ok(
    url: str,
    *,
    auth: tuple[str, str] | None = None,
    timeout: float = 3.0,
    verify: bool | str = True,
) -> Probe:
    """VERIFY=False where a TLS listener is checked for being up, not for its name."""
    try:
        resp = httpx.get(url, auth=auth, timeout=timeout, verify=verify)
    except httpx.HTTPError as exc:
        return Probe(False, f"{url}: {type(exc).__name__}: {exc}".rstrip(": "))
    if resp.status_code != 200:
        return Probe(False, f"{url}: HTTP {resp.status_code}")
    return Probe(True, f"HTTP {resp.status_code}")


# PostgreSQL's checkpointer computes its first sleep while recovery (even a clean
# start's) is in progress, without archive_timeout: for up to checkpoint_timeout
# after every start no WAL switch is forced and archiving lags. A configuration
# reload wakes it once recovery is over; the checkpointer's start time, kept in
# a marker file, makes that once per start. deploy/postgres/healthcheck.sh does
# the same in compose.
CHECKPOINTER_STARTED = """SELECT backend_start::text FROM pg_stat_activity
                          WHERE backend_type = 'checkpointer' AND NOT pg_is_in_recovery()"""
WAKE_MARKER = ".checkpointer-woken"


def _wake_checkpointer(conn: psycopg.Connection, marker: Path) -> None:
    row = conn.execute(CHECKPOINTER_STARTED).fetchone()
    if row is None:
        return
    with contextlib.suppress(OSError):
        if marker.read_text() == row[0]:
            return
    conn.execute("SELECT pg_reload_conf()")
    with contextlib.suppress(OSError):  # else woken again at the next probe
        marker.write_text(row[0])


def postgres_ok(
    *,
    host: str,
    port: int,
    user: str,
    password: str,
    dbname: str,
    timeout: int = 3,
    wake_marker: Path | None = None,
) -> Probe:
    try:
        with psycopg.connect(
            host=host,
            port=port,
            user=user,
            password=password,
            dbname=dbname,
            connect_timeout=timeout,
            application_name="prefectstack-health",
            autocommit=True,
        ) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            if wake_marker is not None:
                _wake_checkpointer(conn, wake_marker)
    except psycopg.Error as exc:
        return Probe(False, str(exc).strip().splitlines()[0])
    return Probe(True, f"PostgreSQL {version}")


def redis_ui_ok(base_url: str, user: str, password: str) -> Probe:
    """redis-commander answers, its login works, and it reaches Redis."""
    try:
        with httpx.Client(base_url=base_url, timeout=3) as client:
            token = client.post("/signin", json={"username": user, "password": password}).json()
            if not token.get("ok"):
                return Probe(False, "sign-in refused")
            headers = {"Authorization": f"Bearer {token['bearerToken']}"}
            info = client.get("/apiv2/server/info", headers=headers)
    except (httpx.HTTPError, ValueError) as exc:
        return Probe(False, f"{base_url}: {type(exc).__name__}: {exc}")
    if info.status_code != 200:
        return Probe(False, f"server info: HTTP {info.status_code}")
    body = info.json()
    servers = body.get("data", body) if isinstance(body, dict) else body
    text = json.dumps(servers)
    if '"disabled": true' in text:
        return Probe(False, "redis-commander cannot reach Redis")
    return Probe(True, "signed in, Redis reachable")


def redis_client(*, host: str, port: int, password: str, db: int = 0) -> redis.Redis:
    return redis.Redis(
        host=host,
        port=port,
        password=password,
        db=db,
        socket_timeout=3,
        socket_connect_timeout=3,
        decode_responses=True,
    )


def redis_ok(*, host: str, port: int, password: str) -> Probe:
    try:
        client = redis_client(host=host, port=port, password=password)
        client.ping()
        version = client.info("server")["redis_version"]
    except redis.RedisError as exc:
        return Probe(False, f"{type(exc).__name__}: {exc}")
    return Probe(True, f"Redis {version}")


def _fresh_docket_workers(docket: redis.Redis, prefix: str, max_age_s: float) -> list[str]:
    now = time.time()
    return [
        name
        for name, score in docket.zrange(DOCKET_WORKERS_KEY, 0, -1, withscores=True)
        if name.startswith(prefix) and now - score <= max_age_s
    ]


def background_services_ok(
    messaging: redis.Redis,
    docket: redis.Redis,
    *,
    host: str,
    pid: int | None = None,
    max_age_s: float = 30.0,
) -> Probe:
    """One background-services process is alive: its docket worker (named
    "<host>#<pid>"; the docket name `prefect` is hard-coded) heartbeats, and every
    consumer group the services serve exists with a consumer. Without `pid`, any
    process on `host` (one container). Consumers are not matched to the process:
    after a full restart the new processes read without being listed under their
    own names in XINFO CONSUMERS. Consumer idle times are no liveness signal on
    Redis 7.0, where a blocking read that times out does not reset them."""
    worker = f"{host}#{pid}" if pid else f"{host}#"
    problems = []
    try:
        if not _fresh_docket_workers(docket, worker, max_age_s):
            problems.append(f"no fresh docket heartbeat from {worker}")
        for stream, groups in SERVICE_CONSUMER_GROUPS.items():
            known = (
                {g["name"]: g["consumers"] for g in messaging.xinfo_groups(stream)}
                if messaging.exists(stream)
                else {}
            )
            for group in groups:
                if not known.get(group):
                    problems.append(f"{stream}/{group}: no consumer")
    except redis.RedisError as exc:
        return Probe(False, f"{type(exc).__name__}: {exc}")
    if problems:
        return Probe(False, "; ".join(problems))
    return Probe(True, "docket heartbeat fresh, all consumer groups served")


def live_background_services(docket: redis.Redis, *, max_age_s: float = 30.0) -> int:
    """How many background-services processes heartbeat on docket (raises RedisError)."""
    return len(_fresh_docket_workers(docket, "", max_age_s))


@dataclass(frozen=True)
class GroupBacklog:
    stream: str
    group: str
    consumers: int
    pending: int
    oldest_pending_age_s: float  # 0 when nothing is pending
    oldest_undelivered_age_s: float  # 0 when the group has read everything


def stream_backlog(client: redis.Redis, streams: dict[str, tuple[str, ...]]) -> list[GroupBacklog]:
    """Backlog of each consumer group. Stream ids are millisecond timestamps, so
    the age of the oldest unread or unacknowledged entry is the group's lag."""
    now_ms = time.time() * 1000

    def age(stream_id: str) -> float:
        return max(0.0, (now_ms - int(stream_id.split("-")[0])) / 1000)

    out = []
    for stream, wanted in streams.items():
        if not client.exists(stream):
            continue
        groups = {g["name"]: g for g in client.xinfo_groups(stream)}
        for name in wanted:
            group = groups.get(name)
            if group is None:
                continue
            summary = client.xpending(stream, name)
            oldest = summary.get("min") if summary.get("pending") else None
            unread = client.xrange(stream, min=f"({group['last-delivered-id']}", count=1)
            out.append(
                GroupBacklog(
                    stream=stream,
                    group=name,
                    consumers=group["consumers"],
                    pending=group["pending"],
                    oldest_pending_age_s=age(oldest) if oldest else 0.0,
                    oldest_undelivered_age_s=age(unread[0][0]) if unread else 0.0,
                )
            )
    return out
