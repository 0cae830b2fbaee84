"""Environment of the Prefect server processes.

The fixed multi-replica settings live in deploy/prefect/prefect.env, shared
with docker-compose.yml; this module adds the connection settings, whose
hosts differ per deployment mode but whose values all come from .env.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

from dotenv import dotenv_values

from .paths import asset
from .settings import StackSettings


@dataclass(frozen=True)
class Endpoints:
    """Where a Prefect process reaches PostgreSQL and Redis."""

    postgres_host: str
    postgres_port: int
    redis_host: str
    redis_port: int


@cache
def shared_env() -> dict[str, str]:
    values = dotenv_values(asset("prefect", "prefect.env"), interpolate=False)
    return {k: v for k, v in values.items() if v is not None}


def connection_env(s: StackSettings, ep: Endpoints) -> dict[str, str]:
    redis_password = s.redis_password.get_secret_value()
    redis = {
        "HOST": ep.redis_host,
        "PORT": str(ep.redis_port),
        "DB": str(s.prefect_redis_messaging_db),
        "PASSWORD": redis_password,
    }
    env = {
        "PREFECT_API_DATABASE_HOST": ep.postgres_host,
        "PREFECT_API_DATABASE_PORT": str(ep.postgres_port),
        "PREFECT_API_DATABASE_USER": s.postgres_user,
        "PREFECT_API_DATABASE_PASSWORD": s.postgres_password.get_secret_value(),
        "PREFECT_API_DATABASE_NAME": s.postgres_db,
        "PREFECT_API_DATABASE_MIGRATE_ON_START": str(
            s.prefect_api_database_migrate_on_start
        ).lower(),
        "PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE": str(
            s.prefect_server_database_sqlalchemy_pool_size
        ),
        "PREFECT_SERVER_DATABASE_SQLALCHEMY_MAX_OVERFLOW": str(
            s.prefect_server_database_sqlalchemy_max_overflow
        ),
        "PREFECT_MESSAGING_BROKER": s.prefect_messaging_broker,
        "PREFECT_MESSAGING_CACHE": s.prefect_messaging_cache,
        "PREFECT_SERVER_DOCKET_URL": (
            f"redis://:{redis_password}@{ep.redis_host}:{ep.redis_port}/{s.prefect_docket_redis_db}"
        ),
        "PREFECT_SERVER_API_AUTH_STRING": s.auth_string,
        "PREFECT_UI_API_URL": s.ui_api_url,
    }
    # The worker cleanup queue has its own connection block; it does not
    # inherit the messaging one and would default to localhost:6379.
    for block in ("PREFECT_REDIS_MESSAGING", "PREFECT_REDIS_WORKER_CLEANUP_QUEUE"):
        env.update({f"{block}_{k}": v for k, v in redis.items()})
    return {**env, **retention_env(s)}


def retention_env(s: StackSettings) -> dict[str, str]:
    """The data retention of .env as Prefect's db_vacuum service reads it (run by
    the background services; the API replicas ignore it)."""
    heartbeat = json.dumps({"prefect.flow-run.heartbeat": s.heartbeat_events_retention})
    return {
        "PREFECT_SERVER_EVENTS_RETENTION_PERIOD": s.events_retention,
        "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": s.db_vacuum,
        "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD": s.flow_run_retention,
        "PREFECT_SERVER_SERVICES_DB_VACUUM_EVENT_RETENTION_OVERRIDES": heartbeat,
        "PREFECT_SERVER_SERVICES_DB_VACUUM_LOOP_SECONDS": str(s.db_vacuum_interval_seconds),
        "PREFECT_SERVER_SERVICES_DB_VACUUM_ORPHAN_CLEANUP_LOOP_SECONDS": str(
            s.db_orphan_cleanup_interval_seconds
        ),
    }


def server_env(s: StackSettings, ep: Endpoints, *, application_name: str) -> dict[str, str]:
    """Everything a migrate, API or background-services process needs."""
    return {
        **shared_env(),
        **connection_env(s, ep),
        "PREFECT_SERVER_DATABASE_SQLALCHEMY_CONNECT_ARGS_APPLICATION_NAME": application_name,
    }
