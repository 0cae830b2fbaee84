"""The stack's one typed configuration model, read from `.env`.

Both deployment modes are driven by these keys: docker compose interpolates
them into docker-compose.yml, native mode reads them through this model.
pydantic-settings gives typed parsing and per-key error messages, so a bad
value fails before anything starts.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from .releases.versions import VERIFIED_PREFECT

Port = Annotated[int, Field(ge=1, le=65535)]

# Characters that survive inside a URL, a libpq conninfo and a shell word
# without quoting. The Redis password ends up in PREFECT_SERVER_DOCKET_URL.
URL_SAFE = re.compile(r"^[A-Za-z0-9._~-]+$")
PROJECT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
MEMORY_RE = re.compile(r"^[0-9]+(kb|mb|gb)$", re.IGNORECASE)
DURATION_RE = re.compile(r"^[0-9]+(ms|s|m|h|d|w|y)$")
S3_ENDPOINT_RE = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")

WILDCARD_ADDRESSES = ("0.0.0.0", "::")
REDIS_BROKER = "prefect_redis.messaging"
# The compose service names; native mode maps them to the loopback address.
POSTGRES_SERVICE_HOST = "postgres"
REDIS_SERVICE_HOST = "redis"


# Keys prefectstack's commands read in both modes and docker compose never
# interpolates (compose mounts what `prefectstack tls` made from them).
CLI_ONLY_KEYS = frozenset({"TLS_SELF_SIGNED"})

# Keys only native mode reads: in compose these ports are fixed inside the
# backend network and the state lives in named volumes.
NATIVE_ONLY_KEYS = frozenset(
    {
        "PREFECT_API_FIRST_PORT",
        "NGINX_STATUS_PORT",
        "POSTGRES_EXPORTER_PORT",
        "REDIS_EXPORTER_PORT",
        "NGINX_EXPORTER_PORT",
        "NGINX_LOG_EXPORTER_PORT",
        "PREFECT_EXPORTER_PORT",
    }
)


# Whole days ("7d"): the form both this model and Prefect's settings read.
RETENTION_RE = re.compile(r"^([1-9][0-9]{0,4})d$")


def retention_seconds(value: str) -> int | None:
    """A retention in days ("7d") as seconds, None if it is not one."""
    match = RETENTION_RE.match(value)
    return int(match.group(1)) * 86400 if match else None


class SettingsError(Exception):
    """A configuration that cannot be used; `problems` holds one line per key."""

    def __init__(self, source: Path | None, problems: list[str]):
        self.source = source
        self.problems = problems
        where = f" in {source}" if source else ""
        super().__init__(f"invalid configuration{where}:\n  " + "\n  ".join(problems))


class StackSettings(BaseSettings):
    """Every key of `.env`. Field names are the lower-cased keys.

    No defaults here: .env.example is the one place default values are written
    (`prefectstack init` copies it, docker compose reads the resulting .env), so
    a key missing from .env is reported rather than silently filled in.
    """

    model_config = SettingsConfigDict(
        case_sensitive=False,
        extra="forbid",
        env_ignore_empty=True,
    )

    _env_path: Path | None = PrivateAttr(default=None)

    # --- project -----------------------------------------------------------
    project_name: str
    bind_address: str
    state_dir: Path
    compose_file: str

    # --- PostgreSQL ----------------------------------------------------------
    postgres_user: str
    postgres_password: SecretStr
    postgres_db: str
    postgres_port: Port
    postgres_max_connections: Annotated[int, Field(ge=20, le=10000)]
    postgres_shared_buffers: str

    # --- Prefect -------------------------------------------------------------
    prefect_version: str
    prefect_port: Port
    prefect_api_replicas: Annotated[int, Field(ge=1, le=32)]
    prefect_api_first_port: Port
    prefect_services_replicas: Annotated[int, Field(ge=1, le=8)]
    prefect_ui_api_url: str | None = None
    prefect_server_api_auth_string: SecretStr
    prefect_api_database_migrate_on_start: bool
    prefect_api_database_connection_url: SecretStr | None = None
    prefect_server_database_sqlalchemy_pool_size: Annotated[int, Field(ge=1, le=200)]
    prefect_server_database_sqlalchemy_max_overflow: Annotated[int, Field(ge=0, le=200)]
    prefect_messaging_broker: Literal["prefect_redis.messaging"]
    prefect_messaging_cache: Literal["prefect_redis.messaging"]
    prefect_redis_messaging_host: Literal["redis"]
    prefect_redis_messaging_port: Port
    prefect_redis_messaging_db: Annotated[int, Field(ge=0, le=15)]
    prefect_docket_redis_db: Annotated[int, Field(ge=0, le=15)]
    prefect_worker_pool: str

    # --- TLS at the load balancer --------------------------------------------
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_ca_file: Path | None = None
    tls_self_signed: bool

    # --- Redis ---------------------------------------------------------------
    redis_password: SecretStr
    redis_maxmemory: str

    # --- web UIs -------------------------------------------------------------
    pgadmin_default_email: str
    pgadmin_default_password: SecretStr
    pgadmin_port: Port
    ardm_port: Port
    redis_ui_user: str
    redis_ui_password: SecretStr

    # --- monitoring ----------------------------------------------------------
    grafana_admin_user: str
    grafana_admin_password: SecretStr
    grafana_port: Port
    prometheus_port: Port
    prometheus_retention: str
    alertmanager_port: Port
    alert_webhook_url: str | None = None
    background_task_stuck_seconds: Annotated[int, Field(ge=10, le=604800)]
    nginx_status_port: Port
    postgres_exporter_port: Port
    redis_exporter_port: Port
    nginx_exporter_port: Port
    nginx_log_exporter_port: Port
    prefect_exporter_port: Port

    # --- backups -------------------------------------------------------------
    backup_dir: Path
    backup_schedule: str
    backup_keep_days: Annotated[int, Field(ge=1)]
    backup_keep_weeks: Annotated[int, Field(ge=0)]
    backup_keep_months: Annotated[int, Field(ge=0)]
    wal_archive_timeout: Annotated[int, Field(ge=10, le=3600)]
    pgbackrest_repo_path: Path | None = None
    pgbackrest_repo_type: Literal["posix", "s3"] = "posix"
    pgbackrest_s3_endpoint: str | None = None  # host or host:port
    pgbackrest_s3_bucket: str | None = None
    pgbackrest_s3_region: str | None = None
    pgbackrest_s3_key: str | None = None
    pgbackrest_s3_key_secret: SecretStr | None = None
    pgbackrest_s3_uri_style: Literal["host", "path"] = "host"
    pgbackrest_s3_path: str = "/pgbackrest"
    pgbackrest_s3_ca_file: Path | None = None
    pgbackrest_full_schedule: str
    pgbackrest_diff_schedule: str
    pgbackrest_retention_full: Annotated[int, Field(ge=1, le=100)]

    # --- data retention ------------------------------------------------------
    events_retention: str
    heartbeat_events_retention: str
    db_vacuum: Literal["events", "events,flow_runs"]
    flow_run_retention: str
    db_vacuum_interval_seconds: Annotated[int, Field(ge=10, le=604800)]
    db_orphan_cleanup_interval_seconds: Annotated[int, Field(ge=10, le=2592000)]

    # --- validators ------------------------------------------------------------
    @field_validator("project_name")
    @classmethod
    def _project_name(cls, v: str) -> str:
        if not PROJECT_NAME_RE.match(v):
            raise ValueError(
                "must start with a lower-case letter or digit and contain only "
                "a-z, 0-9, '_' and '-' (it names the compose project and containers)"
            )
        return v

    @field_validator("bind_address")
    @classmethod
    def _ip(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise ValueError("must be an IP address such as 127.0.0.1 or 0.0.0.0") from None
        return v

    @field_validator("postgres_user", "postgres_db", "redis_ui_user", "grafana_admin_user")
    @classmethod
    def _identifier(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", v):
            raise ValueError("must be a plain identifier: letters, digits and '_'")
        return v

    @field_validator(
        "postgres_password",
        "redis_password",
        "pgadmin_default_password",
        "redis_ui_password",
        "grafana_admin_password",
    )
    @classmethod
    def _secret(cls, v: SecretStr) -> SecretStr:
        if not URL_SAFE.match(v.get_secret_value()):
            raise ValueError(
                "may contain only letters, digits and . _ ~ - (it is embedded in "
                "connection URLs); `prefectstack init` generates a suitable value"
            )
        return v

    @field_validator("prefect_version")
    @classmethod
    def _verified_release(cls, v: str) -> str:
        if v not in VERIFIED_PREFECT:
            raise ValueError(
                f"Prefect {v} is not a release prefectstack was verified on "
                f"({', '.join(VERIFIED_PREFECT)})"
            )
        return v

    @field_validator("prefect_server_api_auth_string")
    @classmethod
    def _auth_string(cls, v: SecretStr) -> SecretStr:
        user, sep, password = v.get_secret_value().partition(":")
        if not sep or not user or not password:
            raise ValueError("must have the form user:password")
        if not re.match(r"^[A-Za-z0-9_.-]+$", user) or not URL_SAFE.match(password):
            raise ValueError(
                "user may contain letters, digits and . _ -; password letters, digits and . _ ~ -"
            )
        return v

    @field_validator("prefect_api_database_migrate_on_start")
    @classmethod
    def _no_migrate_on_start(cls, v: bool) -> bool:
        if v:
            raise ValueError(
                "must be false: only the one-shot migrate service changes the schema; "
                "replicas migrating as they start race each other"
            )
        return v

    @field_validator("prefect_worker_pool")
    @classmethod
    def _pool(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", v):
            raise ValueError("must be a work pool name: letters, digits, '.', '_' and '-'")
        return v

    @field_validator("events_retention", "heartbeat_events_retention", "flow_run_retention")
    @classmethod
    def _retention(cls, v: str) -> str:
        if retention_seconds(v) is None:
            raise ValueError("must be a number of days such as 7d")
        return v

    @field_validator("backup_schedule", "pgbackrest_full_schedule", "pgbackrest_diff_schedule")
    @classmethod
    def _schedule(cls, v: str) -> str:
        from .backups.schedule import valid

        if not valid(v):
            raise ValueError(
                "must be @hourly, @daily, @weekly, @monthly or @every <duration> "
                "(e.g. @every 6h, at least 1m); both the native scheduler and the "
                "compose backup image read these the same way"
            )
        return v

    @field_validator("pgadmin_default_email")
    @classmethod
    def _email(cls, v: str) -> str:
        if not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", v):
            raise ValueError("must be an e-mail address (pgAdmin logs in with it)")
        return v

    @field_validator("postgres_shared_buffers")
    @classmethod
    def _pg_memory(cls, v: str) -> str:
        if not re.match(r"^[0-9]+(kB|MB|GB)$", v):
            raise ValueError("must be a PostgreSQL size such as 256MB or 1GB")
        return v

    @field_validator("redis_maxmemory")
    @classmethod
    def _redis_memory(cls, v: str) -> str:
        if not MEMORY_RE.match(v):
            raise ValueError("must be a Redis size such as 512mb or 2gb")
        return v.lower()

    @field_validator("prometheus_retention")
    @classmethod
    def _duration(cls, v: str) -> str:
        if not DURATION_RE.match(v):
            raise ValueError("must be a Prometheus duration such as 15d or 12h")
        return v

    @field_validator("compose_file")
    @classmethod
    def _compose_files(cls, v: str) -> str:
        files = v.split(":")
        if files[0] != "docker-compose.yml":
            raise ValueError("must start with docker-compose.yml (the stack's compose file)")
        bad = [f for f in files if not re.match(r"^[\w./-]+\.ya?ml$", f)]
        if bad:
            raise ValueError(f"{', '.join(repr(f) for f in bad)}: not a compose file name")
        return v

    @field_validator("prefect_ui_api_url", "alert_webhook_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^\s/]+(/\S*)?$", v):
            raise ValueError("must be an http:// or https:// URL")
        return v

    @model_validator(mode="after")
    def _ui_url_when_listening_everywhere(self) -> StackSettings:
        if self.prefect_ui_api_url is None and self.bind_address in WILDCARD_ADDRESSES:
            raise ValueError(
                f"PREFECT_UI_API_URL must be set when BIND_ADDRESS is {self.bind_address}: "
                "the browser UI needs the address users open, e.g. "
                f"http://prefect.internal:{self.prefect_port}/api"
            )
        return self

    @model_validator(mode="after")
    def _one_kind_of_certificate(self) -> StackSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TLS_KEY_FILE and TLS_CERT_FILE go together: set both or neither")
        if self.tls_self_signed and self.tls_cert_file is not None:
            raise ValueError(
                "TLS_SELF_SIGNED is true and TLS_CERT_FILE is set: choose one certificate"
            )
        if self.tls_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("TLS_CA_FILE names the CA of TLS_CERT_FILE, which is not set")
        return self

    @model_validator(mode="after")
    def _s3_repository(self) -> StackSettings:
        if self.pgbackrest_repo_type != "s3":
            return self
        needed = ("endpoint", "bucket", "region", "key", "key_secret")
        missing = [f"PGBACKREST_S3_{n.upper()}" for n in needed
                   if not getattr(self, f"pgbackrest_s3_{n}")]  # fmt: skip
        if missing:
            raise ValueError(f"PGBACKREST_REPO_TYPE is s3, which needs {', '.join(missing)}")
        if not S3_ENDPOINT_RE.match(self.pgbackrest_s3_endpoint or ""):
            raise ValueError("PGBACKREST_S3_ENDPOINT must be a host name, or host:port")
        if not self.pgbackrest_s3_path.startswith("/"):
            raise ValueError("PGBACKREST_S3_PATH must start with / (a path inside the bucket)")
        return self

    @model_validator(mode="after")
    def _seed_connection_url(self) -> StackSettings:
        # The seed's .env carried the full URL; it is now derived from POSTGRES_*.
        # Accept it only when it says the same thing, so no password is typed twice
        # with a chance to disagree.
        given = self.prefect_api_database_connection_url
        if given is not None and given.get_secret_value() != self.compose_database_url:
            raise ValueError(
                "PREFECT_API_DATABASE_CONNECTION_URL disagrees with POSTGRES_USER/"
                "POSTGRES_PASSWORD/POSTGRES_DB; remove it, the stack derives it"
            )
        return self

    # --- derived values ----------------------------------------------------------
    @property
    def compose_files(self) -> list[str]:
        """COMPOSE_FILE's entries, relative to the checkout (as docker compose reads them)."""
        return self.compose_file.split(":")

    @property
    def env_path(self) -> Path:
        """The .env these settings were read from."""
        if self._env_path is None:
            raise RuntimeError("settings were not loaded from a file")
        return self._env_path

    @property
    def compose_database_url(self) -> str:
        return (
            f"postgresql+asyncpg://{self.postgres_user}:"
            f"{self.postgres_password.get_secret_value()}@{POSTGRES_SERVICE_HOST}:5432/"
            f"{self.postgres_db}"
        )

    @property
    def lb_url(self) -> str:
        """The load balancer as seen from this machine."""
        return f"{self.lb_scheme}://{_loopback_for(self.bind_address)}:{self.prefect_port}"

    @property
    def tls(self) -> bool:
        return self.tls_self_signed or self.tls_cert_file is not None

    @property
    def lb_scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def ui_api_url(self) -> str:
        return (
            self.prefect_ui_api_url
            or f"{self.lb_scheme}://{self.bind_address}:{self.prefect_port}/api"
        )

    @property
    def auth_string(self) -> str:
        return self.prefect_server_api_auth_string.get_secret_value()

    @property
    def api_ports(self) -> list[int]:
        return [self.prefect_api_first_port + i for i in range(self.prefect_api_replicas)]

    @property
    def pgbackrest_repo(self) -> Path:
        """The pgBackRest repository (PGBACKREST_REPO_PATH, else BACKUP_DIR/pgbackrest)."""
        return self.pgbackrest_repo_path or self.backup_dir / "pgbackrest"

    @property
    def pgbackrest_repo_name(self) -> str:
        """Where the repository is, as messages name it."""
        if self.pgbackrest_repo_type == "s3":
            return f"s3://{self.pgbackrest_s3_bucket}{self.pgbackrest_s3_path}"
        return str(self.pgbackrest_repo)

    def resolve_paths(self, base: Path) -> StackSettings:
        """Make relative paths relative to the directory of the .env file."""
        for name in ("state_dir", "backup_dir", "pgbackrest_repo_path", "tls_cert_file",
                     "tls_key_file", "tls_ca_file", "pgbackrest_s3_ca_file"):  # fmt: skip
            value: Path | None = getattr(self, name)
            if value is not None and not value.is_absolute():
                object.__setattr__(self, name, (base / value).resolve())
        return self


# Every single-port key (the replicas take a block from PREFECT_API_FIRST_PORT).
PORT_KEYS = tuple(
    name.upper()
    for name in StackSettings.model_fields
    if name.endswith("_port") and name != "prefect_api_first_port"
)


def _loopback_for(bind_address: str) -> str:
    return "127.0.0.1" if bind_address in WILDCARD_ADDRESSES else bind_address


def env_key(field: str) -> str:
    return field.upper()


def example_values() -> dict[str, str]:
    """The defaults written in .env.example (empty for secrets)."""
    from dotenv import dotenv_values

    from .paths import REPO_ROOT

    example = REPO_ROOT / ".env.example"
    if not example.is_file():
        return {}
    return {k: v or "" for k, v in dotenv_values(example, interpolate=False).items()}


def format_validation_error(err: ValidationError, examples: dict[str, str]) -> list[str]:
    problems = []
    for item in err.errors():
        key = env_key(str(item["loc"][0])) if item["loc"] else "configuration"
        msg = item["msg"].removeprefix("Value error, ")
        if not item["loc"] and (named := re.match(r"^([A-Z][A-Z0-9_]+) (.+)$", msg)):
            key, msg = named.groups()  # a rule across keys names its key first
        if item["type"] == "missing" and examples.get(key):
            msg = f"is not set; .env.example has {key}={examples[key]} (copy that line)"
        elif item["type"] == "missing":
            msg = "is required but not set (a secret: `prefectstack init` generates one)"
        elif item["type"] == "extra_forbidden":
            msg = "is not a known setting (misspelt? see .env.example)"
        elif item["type"] == "literal_error":
            msg = f"{msg}; the stack needs this exact value to run several API replicas"
        problems.append(f"{key}: {msg}")
    return problems


def load_settings(env_file: Path) -> StackSettings:
    """Read and validate `env_file`; raise SettingsError naming every bad key."""
    env_file = Path(env_file)
    if not env_file.is_file():
        raise SettingsError(
            env_file,
            [f"{env_file}: no such file; create it with `prefectstack init` or copy .env.example"],
        )
    try:
        settings = StackSettings(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as err:
        raise SettingsError(env_file, format_validation_error(err, example_values())) from None
    settings = settings.resolve_paths(env_file.resolve().parent)
    settings._env_path = env_file.resolve()
    return settings
