"""`prefectstack check`: everything that can be known about a configuration
without starting it. One finding per problem, naming the key and the fix."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

from dotenv import dotenv_values

from .backups.schedule import interval
from .loadbalancer import tls
from .localports import bindable
from .prefect_env import shared_env
from .releases.versions import bundled
from .settings import PORT_KEYS, SettingsError, StackSettings, load_settings, retention_seconds

# Passwords the seed shipped or that a scanner tries first.
WEAK_PASSWORDS = {
    "admin",
    "admin123",
    "password",
    "passw0rd",
    "prefect",
    "postgres",
    "redis",
    "grafana",
    "pgadmin",
    "changeme",
    "secret",
    "123456",
    "12345678",
    "letmein",
    "qwerty",
    "test",
}
MIN_SECRET_LENGTH = 16
# What else opens PostgreSQL connections besides the API replicas' pools.
BACKGROUND_EXTRA = 1  # the triggers service's LISTEN connection, outside its pool
MIGRATE = 2
EXPORTERS = 2  # postgres_exporter + the Prefect exporter
PGADMIN = 5
BACKUPS = 2  # a dump, plus a verify/restore at the same time
RESERVE = 10  # superuser_reserved_connections (3) and room for psql / maintenance
S3_OVERRIDE = "docker-compose.s3.yml"  # compose's S3 repository


@dataclass(frozen=True)
class Finding:
    level: str  # error | warning | info
    key: str
    message: str

    def line(self) -> str:
        return f"{self.level}: {self.key}: {self.message}"


def connection_budget(s: StackSettings) -> tuple[int, int, str]:
    """(needed, available, arithmetic) for PostgreSQL connections."""
    per_process = (
        s.prefect_server_database_sqlalchemy_pool_size
        + s.prefect_server_database_sqlalchemy_max_overflow
    )
    replicas = s.prefect_api_replicas * per_process
    background = s.prefect_services_replicas * (per_process + BACKGROUND_EXTRA)
    needed = replicas + background + MIGRATE + EXPORTERS + PGADMIN + BACKUPS
    available = s.postgres_max_connections - RESERVE
    arithmetic = (
        f"{s.prefect_api_replicas} replicas x ({s.prefect_server_database_sqlalchemy_pool_size}"
        f" pool + {s.prefect_server_database_sqlalchemy_max_overflow} overflow) = {replicas}"
        f" + {s.prefect_services_replicas} background services x {per_process + BACKGROUND_EXTRA}"
        f" = {background} + migrate {MIGRATE} + exporters {EXPORTERS}"
        f" + pgAdmin {PGADMIN} + backups {BACKUPS} = {needed}; available: max_connections"
        f" {s.postgres_max_connections} - reserve {RESERVE} = {available}"
    )
    return needed, available, arithmetic


def check_raw(raw: dict[str, str | None]) -> list[Finding]:
    """Checks of the file's values that hold even when other keys are invalid."""
    from .init_env import secret_keys

    found = [
        Finding(
            "error",
            key,
            "contains '$', which docker compose would read as a variable; use another character",
        )
        for key, value in raw.items()
        if value and "$" in value
    ]
    for key in secret_keys():
        value = raw.get(key) or ""
        if key == "PREFECT_SERVER_API_AUTH_STRING":
            value = value.partition(":")[2]
        if not value:
            continue  # reported by the settings model
        if value.lower() in WEAK_PASSWORDS:
            found.append(
                Finding(
                    "error",
                    key,
                    f"'{value}' is a well-known default password; "
                    "run `prefectstack init --force` or set a random value",
                )
            )
        elif len(value) < MIN_SECRET_LENGTH:
            found.append(
                Finding(
                    "error",
                    key,
                    f"{len(value)} characters is too short for a "
                    f"password; use at least {MIN_SECRET_LENGTH} random characters",
                )
            )
    return found


def _ports(s: StackSettings) -> list[tuple[str, int]]:
    ports = [(key, getattr(s, key.lower())) for key in PORT_KEYS]
    ports += [
        (f"PREFECT_API_FIRST_PORT+{i}" if i else "PREFECT_API_FIRST_PORT", port)
        for i, port in enumerate(s.api_ports)
    ]
    return ports


# What several background-services processes need to share their work instead of
# doing it twice (Prefect 3.9.1): each of these must be a Redis module, not the
# per-process memory default. Docket's URL and the broker are set from .env.
SHARED_SERVICE_STATE = {
    "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": (
        "prefect_redis.ordering",
        "automations would see events out of order and fire twice or not at all",
    ),
    "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": (
        "prefect_redis.lease_storage",
        "each process's lease repossessor would see only its own leases",
    ),
    "PREFECT_SERVER_WORKER_CHANNEL_CLEANUP_QUEUE_STORAGE": (
        "prefect_redis.cleanup_queue",
        "cleanup deliveries would stay in the memory of one process",
    ),
}
# Keys the stack derives from .env; a value in prefect.env would be overridden
# in one mode and not the other.
DERIVED_SERVER_KEYS = ("PREFECT_SERVER_DOCKET_URL", "PREFECT_MESSAGING_BROKER")


def check_service_layout(s: StackSettings, shared: dict[str, str]) -> list[Finding]:
    """Several background-services processes only with every piece of shared state on
    Redis; otherwise scheduled runs and automation actions are made twice."""
    found = []
    for key in DERIVED_SERVER_KEYS:
        if key in shared:
            found.append(
                Finding(
                    "error",
                    key,
                    f"is set in deploy/prefect/prefect.env ({shared[key]}); the stack derives "
                    "it from .env: remove that line",
                )
            )
    found += _check_task_queue(s, shared)
    if s.prefect_services_replicas == 1:
        return found
    for key, (module, breaks) in SHARED_SERVICE_STATE.items():
        value = shared.get(key, "(unset: the in-memory default)")
        if value != module:
            found.append(
                Finding(
                    "error",
                    "PREFECT_SERVICES_REPLICAS",
                    f"{s.prefect_services_replicas} background-services processes need "
                    f"{key}={module} in deploy/prefect/prefect.env, not {value}: {breaks}. "
                    "Restore that line, or set PREFECT_SERVICES_REPLICAS=1",
                )
            )
    return found


# Several API replicas deliver background task runs only through the shared
# Redis queue of prefectstack's Prefect plugin (src/prefectstack/prefect_plugin).
PREFECT_PLUGIN = "prefectstack"


def _check_task_queue(s: StackSettings, shared: dict[str, str]) -> list[Finding]:
    if s.prefect_api_replicas == 1:
        return []
    enabled = shared.get("PREFECT_PLUGINS_ENABLED", "false").lower() in ("true", "1")
    allow = shared.get("PREFECT_PLUGINS_ALLOW")
    allowed = allow is None or PREFECT_PLUGIN in {a.strip() for a in allow.split(",")}
    if enabled and allowed:
        return []
    return [
        Finding(
            "error",
            "PREFECT_API_REPLICAS",
            f"{s.prefect_api_replicas} API replicas need the Redis task queue: "
            "deploy/prefect/prefect.env must set PREFECT_PLUGINS_ENABLED=true and allow "
            f"{PREFECT_PLUGIN} (PREFECT_PLUGINS_ALLOW); without it task.delay() runs "
            "submitted through one replica never reach workers subscribed through another. "
            "Restore those lines, or set PREFECT_API_REPLICAS=1",
        )
    ]


def check_settings(s: StackSettings, *, stack_running: bool) -> list[Finding]:
    found: list[Finding] = []

    def add(level: str, key: str, message: str) -> None:
        found.append(Finding(level, key, message))

    seen: dict[int, str] = {}
    for key, port in _ports(s):
        if port in seen:
            add("error", key, f"port {port} is also used by {seen[port]}; give each its own port")
        seen.setdefault(port, key)
    if not stack_running:
        for key, port in _ports(s):
            if not bindable("127.0.0.1", port):
                add(
                    "error",
                    key,
                    f"port {port} is already in use on this machine; free it or "
                    "choose another port",
                )
    needed, available, arithmetic = connection_budget(s)
    if needed > available:
        add(
            "error",
            "POSTGRES_MAX_CONNECTIONS",
            f"connection budget exceeded: {arithmetic}. "
            "Raise POSTGRES_MAX_CONNECTIONS or lower the pools / replicas",
        )
    else:
        add("info", "POSTGRES_MAX_CONNECTIONS", f"connection budget: {arithmetic}")
    if s.prefect_redis_messaging_db == s.prefect_docket_redis_db:
        add(
            "error",
            "PREFECT_DOCKET_REDIS_DB",
            f"same Redis database as "
            f"PREFECT_REDIS_MESSAGING_DB ({s.prefect_docket_redis_db}); docket's keys would "
            "mix with the event streams: use another database number",
        )
    if s.prefect_ui_api_url:
        url = urlparse(s.prefect_ui_api_url)
        default_port = 443 if url.scheme == "https" else 80
        port = url.port or default_port
        if not url.path.rstrip("/").endswith("/api"):
            add("error", "PREFECT_UI_API_URL", "must end with /api (the load balancer's API path)")
        if url.hostname in ("0.0.0.0", "::"):
            add(
                "error",
                "PREFECT_UI_API_URL",
                f"{url.hostname} is not an address a browser can open; use this host's name or IP",
            )
        if url.scheme == "http" and port != s.prefect_port:
            add(
                "error",
                "PREFECT_UI_API_URL",
                f"port {port} is not the load balancer's "
                f"PREFECT_PORT {s.prefect_port}; the UI would call something else",
            )
        if url.scheme == "https" and port != s.prefect_port:
            add(
                "warning",
                "PREFECT_UI_API_URL",
                f"https on port {port}: make sure your TLS "
                f"proxy forwards to the load balancer on port {s.prefect_port}",
            )
    if s.bind_address not in ("127.0.0.1", "::1"):
        add(
            "warning",
            "BIND_ADDRESS",
            f"{s.bind_address} publishes the UIs beyond this host"
            + ("" if s.tls else " with TLS off: passwords and API traffic cross the network "
               "in clear text; set TLS_SELF_SIGNED=true or TLS_CERT_FILE/TLS_KEY_FILE")
            + "; pgAdmin, the Redis UI and Grafana are plain HTTP and Prometheus and "
            "Alertmanager have no login: let a firewall admit only the ports users need "
            "(README: TLS at nginx)",
        )  # fmt: skip
    for level, key, message in tls.problems(s):
        add(level, key, message)
    if s.tls and s.prefect_ui_api_url and s.prefect_ui_api_url.startswith("http:"):
        add("error", "PREFECT_UI_API_URL",
            "is http:// but the load balancer serves HTTPS (TLS is on): use https://")  # fmt: skip
    found += _check_retention(s)
    try:
        release = bundled()
    except (OSError, LookupError):  # no uv.lock beside this installation
        release = s.prefect_version
    if s.prefect_version != release:
        add(
            "warning",
            "PREFECT_VERSION",
            f"the stack runs Prefect {s.prefect_version}; this checkout bundles {release}: "
            "`prefectstack upgrade` moves the stack to it while it serves",
        )
    found += check_service_layout(s, shared_env())
    if s.backup_keep_weeks == 0 and s.backup_keep_months == 0:
        add(
            "warning",
            "BACKUP_KEEP_WEEKS",
            "with BACKUP_KEEP_MONTHS also 0, no backup is "
            f"kept longer than {s.backup_keep_days} days",
        )
    found += _check_s3_repository(s)
    return found


def _check_s3_repository(s: StackSettings) -> list[Finding]:
    found = []
    override = S3_OVERRIDE in s.compose_files
    if s.pgbackrest_repo_type == "s3":
        ca = s.pgbackrest_s3_ca_file
        if ca is not None and not ca.is_file():
            found.append(Finding("error", "PGBACKREST_S3_CA_FILE", f"{ca} is not a file"))
        found.append(Finding("info", "PGBACKREST_REPO_TYPE",
                             f"WAL and base backups go to {s.pgbackrest_repo_name}"))  # fmt: skip
        if not override:
            found.append(Finding(
                "warning", "COMPOSE_FILE",
                f"the compose deployment needs {S3_OVERRIDE} in COMPOSE_FILE for the S3 "
                "repository (native mode does not read COMPOSE_FILE)",
            ))  # fmt: skip
    elif override:
        found.append(Finding(
            "error", "COMPOSE_FILE",
            f"{S3_OVERRIDE} puts the repository in S3 but PGBACKREST_REPO_TYPE is "
            f"{s.pgbackrest_repo_type}: set PGBACKREST_REPO_TYPE=s3 or remove the file",
        ))  # fmt: skip
    return found


def _check_retention(s: StackSettings) -> list[Finding]:
    found = []
    dumps = interval(s.backup_schedule)
    kept = {"EVENTS_RETENTION": s.events_retention}
    if "flow_runs" in s.db_vacuum:
        kept["FLOW_RUN_RETENTION"] = s.flow_run_retention
    for key, value in kept.items():
        if timedelta(seconds=retention_seconds(value)) < dumps:
            found.append(Finding(
                "error", key,
                f"{value} is shorter than the time between two backups (BACKUP_SCHEDULE "
                f"{s.backup_schedule}): the data would be deleted before a dump could keep it; "
                "keep it longer or back up more often",
            ))  # fmt: skip
    if retention_seconds(s.heartbeat_events_retention) > retention_seconds(s.events_retention):
        found.append(Finding(
            "warning", "HEARTBEAT_EVENTS_RETENTION",
            f"{s.heartbeat_events_retention} is longer than EVENTS_RETENTION "
            f"({s.events_retention}), which deletes them first",
        ))  # fmt: skip
    if "flow_runs" not in s.db_vacuum:
        found.append(Finding(
            "info", "DB_VACUUM",
            "flow runs, task runs and logs are kept forever; add flow_runs "
            f"(DB_VACUUM=events,flow_runs) to delete those that ended {s.flow_run_retention} ago",
        ))  # fmt: skip
    return found


def native_stack_running(s: StackSettings) -> bool:
    from .native.layout import Layout
    from .native.supervisor import Supervisor

    return Supervisor(Layout(s.state_dir)).running()


def check_env_file(env_file: Path) -> list[Finding]:
    raw = dotenv_values(env_file, interpolate=False) if env_file.is_file() else {}
    findings = check_raw(raw)
    try:
        settings = load_settings(env_file)
    except SettingsError as exc:
        for problem in exc.problems:
            key, _, message = problem.partition(": ")
            findings.append(Finding("error", key, message))
        return findings
    # A running stack holds its own ports; only check them when it is down.
    return findings + check_settings(settings, stack_running=native_stack_running(settings))


def has_errors(findings: list[Finding]) -> bool:
    return any(f.level == "error" for f in findings)
