"""`prefectstack init` and `prefectstack check` on real files."""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from dotenv import dotenv_values
from s3_store import S3_SETTINGS

from prefectstack.checks import check_env_file, check_service_layout, check_settings, has_errors
from prefectstack.init_env import RELOCATED, postgres_can_reach, secret_keys
from prefectstack.prefect_env import shared_env
from prefectstack.settings import load_settings

from conftest import PREFECTSTACK, REPO, make_env_file, read_env, write_env


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*PREFECTSTACK, *args], capture_output=True, text=True, timeout=60, cwd=REPO, check=False
    )


# --- init ------------------------------------------------------------------------


def test_init_generates_long_random_distinct_secrets(tmp_path):
    first, second = tmp_path / "a.env", tmp_path / "b.env"
    assert cli("init", "--env-file", str(first)).returncode == 0
    assert cli("init", "--env-file", str(second)).returncode == 0
    a, b = dotenv_values(first), dotenv_values(second)
    secrets = [k for k in secret_keys()]
    assert len(secrets) == 6
    values = []
    for key in secrets:
        value = a[key].partition(":")[2] if key == "PREFECT_SERVER_API_AUTH_STRING" else a[key]
        assert len(value) >= 32 and re.fullmatch(r"[A-Za-z0-9]+", value), key
        assert a[key] != b[key], f"{key} repeated across runs"
        values.append(value)
    assert len(set(values)) == len(values), "two secrets share a value"
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    # Every other key is .env.example's value, and the result is a valid config.
    example = dotenv_values(REPO / ".env.example")
    relocated = {k: a[k] for k in RELOCATED}
    assert {k: v for k, v in a.items() if k not in secrets} == {
        k: v for k, v in example.items() if k not in secrets and k not in RELOCATED
    } | relocated
    # Its default ports may be taken by a stack started from the Quick start.
    findings = check_settings(load_settings(first), stack_running=True)
    assert not has_errors(findings), [f.line() for f in findings]


@pytest.mark.skipif(os.geteuid() != 0, reason="PostgreSQL runs as its own account only as root")
def test_init_moves_what_postgres_must_reach_out_of_a_closed_checkout(tmp_path):
    closed, open_ = tmp_path / "closed", Path(tempfile.mkdtemp(dir="/tmp"))
    closed.mkdir(mode=0o700)
    open_.chmod(0o755)
    try:
        assert cli("init", "--env-file", str(closed / ".env")).returncode == 0
        assert cli("init", "--env-file", str(open_ / ".env")).returncode == 0
        moved, kept = dotenv_values(closed / ".env"), dotenv_values(open_ / ".env")
    finally:
        shutil.rmtree(open_)
    example = dotenv_values(REPO / ".env.example")
    assert {k: kept[k] for k in RELOCATED} == {k: example[k] for k in RELOCATED}
    state, repo = Path(moved["STATE_DIR"]), Path(moved["PGBACKREST_REPO_PATH"])
    assert state.parent == repo.parent == Path("/var/lib/prefectstack")
    assert repo != state and closed.name in state.name
    # The settings derive the repository from these, and the 'postgres' account
    # can enter where both are made (with their parents, mode 755).
    settings = load_settings(closed / ".env")
    assert settings.pgbackrest_repo == repo and settings.state_dir == state
    assert postgres_can_reach(state.parent if state.parent.exists() else Path("/var/lib"))


def test_init_never_loses_an_existing_env(tmp_path):
    env = tmp_path / ".env"
    env.write_text("POSTGRES_PASSWORD=my-own-precious-value\n")
    refused = cli("init", "--env-file", str(env))
    assert refused.returncode != 0
    assert "already exists" in refused.stderr
    assert env.read_text() == "POSTGRES_PASSWORD=my-own-precious-value\n"

    forced = cli("init", "--force", "--env-file", str(env))
    assert forced.returncode == 0
    backups = list(tmp_path.glob(".env.*.bak"))
    assert len(backups) == 1
    assert backups[0].read_text() == "POSTGRES_PASSWORD=my-own-precious-value\n"
    assert "my-own-precious-value" not in env.read_text()


# --- check -------------------------------------------------------------------------


@pytest.fixture()
def good(tmp_path):
    return make_env_file(tmp_path)


def test_a_good_configuration_passes(good):
    findings = check_env_file(good)
    assert not has_errors(findings), [f.line() for f in findings]
    result = cli("check", "--env-file", str(good))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "connection budget:" in result.stdout
    assert "is valid" in result.stdout


def with_values(path, **values):
    env = read_env(path)
    env.update(values)
    return write_env(path, env)


BAD = [
    ("POSTGRES_PASSWORD", {"POSTGRES_PASSWORD": "admin123"}, "'admin123' is a well-known default"),
    ("REDIS_PASSWORD", {"REDIS_PASSWORD": "shortpw"}, "7 characters is too short"),
    ("PREFECT_SERVER_API_AUTH_STRING", {"PREFECT_SERVER_API_AUTH_STRING": "admin:prefect"},
     "'prefect' is a well-known default"),
    ("PREFECT_SERVER_API_AUTH_STRING", {"PREFECT_SERVER_API_AUTH_STRING": "justapassword1234"},
     "must have the form user:password"),
    ("POSTGRES_PASSWORD", {"POSTGRES_PASSWORD": ""}, "is required but not set"),
    ("PREFECT_PORT", {"PREFECT_PORT": "70000"}, "less than or equal to 65535"),
    ("PREFECT_PORT", {"PREFECT_PORT": "http"}, "valid integer"),
    ("PREFECT_API_REPLICAS", {"PREFECT_API_REPLICAS": "0"}, "greater than or equal to 1"),
    ("PREFECT_DOCKET_REDIS_DB", {"PREFECT_DOCKET_REDIS_DB": "0"}, "same Redis database as"),
    ("BACKUP_KEEP_DAYS", {"BACKUP_KEEP_DAYS": "0"}, "greater than or equal to 1"),
    ("POSTGRES_MAX_CONNECTIONS", {"POSTGRES_MAX_CONNECTIONS": "60"},
     "connection budget exceeded: 3 replicas x (5 pool + 10 overflow) = 45"),
    ("PREFECT_MESSAGING_BROKER",
     {"PREFECT_MESSAGING_BROKER": "prefect.server.utilities.messaging.memory"},
     "needs this exact value to run several API replicas"),
    ("PREFECT_API_DATABASE_MIGRATE_ON_START", {"PREFECT_API_DATABASE_MIGRATE_ON_START": "true"},
     "must be false"),
    ("PREFECT_REDIS_MESSAGING_HOST", {"PREFECT_REDIS_MESSAGING_HOST": "localhost"},
     "Input should be 'redis'"),
    ("PREFECT_UI_API_URL", {"BIND_ADDRESS": "0.0.0.0"}, "must be set when BIND_ADDRESS is 0.0.0.0"),
    ("BACKUP_SCHEDULE", {"BACKUP_SCHEDULE": "0 0 * * *"}, "must be @hourly, @daily"),
    ("REDIS_MAXMEMORY", {"REDIS_MAXMEMORY": "plenty"}, "must be a Redis size"),
    ("PROJECT_NAME", {"PROJECT_NAME": "My Stack"}, "must start with a lower-case letter"),
    ("PGADMIN_DEFAULT_EMAIL", {"PGADMIN_DEFAULT_EMAIL": "admin"}, "must be an e-mail address"),
    ("POSTGRES_PASWORD", {"POSTGRES_PASWORD": "typo"}, "is not a known setting"),
    ("PREFECT_API_DATABASE_CONNECTION_URL",
     {"PREFECT_API_DATABASE_CONNECTION_URL": "postgresql+asyncpg://prefect:x@postgres:5432/prefect"},
     "disagrees with POSTGRES_USER/POSTGRES_PASSWORD/POSTGRES_DB"),
    ("GRAFANA_ADMIN_PASSWORD", {"GRAFANA_ADMIN_PASSWORD": "pa$$word-very-long-1"},
     "docker compose would read as a variable"),
    ("POSTGRES_SHARED_BUFFERS", {"POSTGRES_SHARED_BUFFERS": "256"}, "must be a PostgreSQL size"),
    ("PROMETHEUS_RETENTION", {"PROMETHEUS_RETENTION": "forever"}, "must be a Prometheus duration"),
    ("ALERT_WEBHOOK_URL", {"ALERT_WEBHOOK_URL": "ftp://hooks.example.com/x"},
     "must be an http:// or https:// URL"),
    ("PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE",
     {"PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE": "0"}, "greater than or equal to 1"),
    ("PREFECT_WORKER_POOL", {"PREFECT_WORKER_POOL": "my pool"}, "must be a work pool name"),
    ("BIND_ADDRESS", {"BIND_ADDRESS": "localhost"}, "must be an IP address"),
    ("PREFECT_VERSION", {"PREFECT_VERSION": "3.10.0"},
     "is not a release prefectstack was verified on (3.9.0, 3.9.1)"),
    ("WAL_ARCHIVE_TIMEOUT", {"WAL_ARCHIVE_TIMEOUT": "5"}, "greater than or equal to 10"),
    ("PGBACKREST_FULL_SCHEDULE", {"PGBACKREST_FULL_SCHEDULE": "weekly"}, "must be @hourly, @daily"),
    ("PGBACKREST_RETENTION_FULL", {"PGBACKREST_RETENTION_FULL": "0"}, "greater than or equal to 1"),
    ("PGBACKREST_REPO_TYPE", {"PGBACKREST_REPO_TYPE": "s3", "PGBACKREST_S3_ENDPOINT": "s3"},
     "is s3, which needs PGBACKREST_S3_BUCKET, PGBACKREST_S3_REGION, PGBACKREST_S3_KEY"),
    ("PGBACKREST_REPO_TYPE", {"PGBACKREST_REPO_TYPE": "gcs"}, "Input should be 'posix' or 's3'"),
    ("PGBACKREST_S3_ENDPOINT", dict(S3_SETTINGS, PGBACKREST_S3_ENDPOINT="https://s3.example.com"),
     "must be a host name, or host:port"),
    ("PGBACKREST_S3_PATH", dict(S3_SETTINGS, PGBACKREST_S3_PATH="pgbackrest"), "must start with /"),
    ("PGBACKREST_S3_CA_FILE", dict(S3_SETTINGS, PGBACKREST_S3_CA_FILE="/nonexistent/ca.pem"),
     "is not a file"),
    ("COMPOSE_FILE", {"COMPOSE_FILE": "docker-compose.yml:docker-compose.s3.yml"},
     "puts the repository in S3 but PGBACKREST_REPO_TYPE is posix"),
    ("EVENTS_RETENTION", {"EVENTS_RETENTION": "7 days"}, "must be a number of days such as 7d"),
    ("FLOW_RUN_RETENTION", {"FLOW_RUN_RETENTION": "0d"}, "must be a number of days such as 7d"),
    ("DB_VACUUM", {"DB_VACUUM": "everything"}, "Input should be 'events' or 'events,flow_runs'"),
    ("EVENTS_RETENTION", {"EVENTS_RETENTION": "1d", "BACKUP_SCHEDULE": "@weekly"},
     "shorter than the time between two backups (BACKUP_SCHEDULE @weekly)"),
    ("FLOW_RUN_RETENTION", {"DB_VACUUM": "events,flow_runs", "FLOW_RUN_RETENTION": "3d",
                            "EVENTS_RETENTION": "30d", "BACKUP_SCHEDULE": "@weekly"},
     "the data would be deleted before a dump could keep it"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("key", "values", "message"), BAD, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(BAD)]
)
def test_bad_configuration_is_rejected_with_its_own_message(good, key, values, message):
    findings = check_env_file(with_values(good, **values))
    errors = [f for f in findings if f.level == "error"]
    assert any(f.key == key and message in f.message for f in errors), [f.line() for f in errors]


def test_ui_url_must_point_at_the_load_balancer(good):
    env = read_env(good)
    port = int(env["PREFECT_PORT"])
    wrong_port = check_env_file(
        with_values(good, PREFECT_UI_API_URL=f"http://127.0.0.1:{port + 7}/api")
    )
    assert any("is not the load balancer's PREFECT_PORT" in f.message for f in wrong_port)
    wrong_path = check_env_file(with_values(good, PREFECT_UI_API_URL=f"http://127.0.0.1:{port}/"))
    assert any("must end with /api" in f.message for f in wrong_path)


def test_port_collision_names_both_keys(good):
    env = read_env(good)
    findings = check_env_file(with_values(good, PGADMIN_PORT=env["PREFECT_PORT"]))
    assert any(
        (f.key == "PREFECT_PORT" and "also used by PGADMIN_PORT" in f.message)
        or (f.key == "PGADMIN_PORT" and "also used by PREFECT_PORT" in f.message)
        for f in findings
    ), [f.line() for f in findings]


def test_port_already_in_use_is_reported(good):
    port = int(read_env(good)["GRAFANA_PORT"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        findings = check_env_file(good)
    assert any(
        f.key == "GRAFANA_PORT" and f"port {port} is already in use" in f.message for f in findings
    )


def test_missing_key_is_named_with_its_default(good):
    text = re.sub(r"^PREFECT_PORT=.*\n", "", good.read_text(), flags=re.M)
    good.write_text(text)
    findings = check_env_file(good)
    assert any(
        f.key == "PREFECT_PORT" and ".env.example has PREFECT_PORT=4200" in f.message
        for f in findings
    )


def test_check_exits_non_zero_with_one_line_per_problem(good):
    with_values(good, POSTGRES_PASSWORD="admin123", PREFECT_API_REPLICAS="0")
    result = cli("check", "--env-file", str(good))
    assert result.returncode == 1
    lines = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert len(lines) >= 2
    assert any(line.startswith("error: PREFECT_API_REPLICAS:") for line in lines)


def test_several_background_services_need_all_shared_state_on_redis(good):
    s = load_settings(good)
    assert s.prefect_services_replicas >= 2
    assert not check_service_layout(s, shared_env())
    memory = {**shared_env(), "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "memory"}
    del memory["PREFECT_SERVER_EVENTS_CAUSAL_ORDERING"]
    findings = check_service_layout(s, memory)
    assert [f.key for f in findings] == ["PREFECT_SERVICES_REPLICAS"] * 2
    assert "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING=prefect_redis.ordering" in findings[0].message
    assert "not (unset: the in-memory default)" in findings[0].message
    assert "not memory" in findings[1].message
    assert all(f.level == "error" for f in findings)
    # One process shares nothing: the same file is fine then.
    assert not check_service_layout(
        load_settings(with_values(good, PREFECT_SERVICES_REPLICAS="1")), memory
    )


def test_several_api_replicas_need_the_redis_task_queue_plugin(good):
    s = load_settings(good)
    assert s.prefect_api_replicas >= 2
    assert not check_service_layout(s, shared_env())
    for broken in (
        {"PREFECT_PLUGINS_ENABLED": "false"},
        {"PREFECT_PLUGINS_ALLOW": "prefect-aws"},
    ):
        findings = check_service_layout(s, {**shared_env(), **broken})
        assert [(f.level, f.key) for f in findings] == [("error", "PREFECT_API_REPLICAS")]
        assert "PREFECT_PLUGINS_ENABLED=true" in findings[0].message
    one = load_settings(with_values(good, PREFECT_API_REPLICAS="1"))
    assert not check_service_layout(one, {**shared_env(), "PREFECT_PLUGINS_ENABLED": "false"})


def test_prefect_env_may_not_override_what_the_stack_derives(good):
    shared = {**shared_env(), "PREFECT_SERVER_DOCKET_URL": "memory://"}
    findings = check_service_layout(load_settings(good), shared)
    assert [(f.level, f.key) for f in findings] == [("error", "PREFECT_SERVER_DOCKET_URL")]
    assert "derives it from .env" in findings[0].message


def test_services_replicas_out_of_range_is_rejected(good):
    findings = check_env_file(with_values(good, PREFECT_SERVICES_REPLICAS="0"))
    assert any(
        f.key == "PREFECT_SERVICES_REPLICAS" and "greater than or equal to 1" in f.message
        for f in findings
    )


# --- TLS certificates -----------------------------------------------------------------


def _certificate(tmp_path, *, days: int = 30, start_days: int = -1, name: str = "cert"):
    """A self-signed certificate and its key, valid from START_DAYS for DAYS."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now + timedelta(days=start_days))
        .not_valid_after(now + timedelta(days=start_days + days))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_path, key_path


def _tls_errors(good, **values) -> list[str]:
    findings = check_env_file(with_values(good, **values))
    return [f.line() for f in findings if f.level in ("error", "warning")]


def test_a_good_certificate_passes(good, tmp_path):
    cert, key = _certificate(tmp_path, days=365)
    lines = _tls_errors(good, TLS_CERT_FILE=str(cert), TLS_KEY_FILE=str(key))
    assert not [line for line in lines if line.split(":")[1].strip().startswith("TLS_")], lines


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "cannot be read: No such file or directory"),
        ("unreadable", "holds no PEM certificate"),
        ("expired", "expired on"),
        ("not yet valid", "is not valid yet"),
        ("expiring", "expires on"),
        ("other key", "is not the key of"),
        ("key only", "TLS_KEY_FILE: and TLS_CERT_FILE go together"),
        ("both kinds", "choose one certificate"),
        ("http ui", "is http:// but the load balancer serves HTTPS"),
    ],
)
def test_certificate_problems_are_named(good, tmp_path, case, message):
    cert, key = _certificate(tmp_path, days=365)
    values = {"TLS_CERT_FILE": str(cert), "TLS_KEY_FILE": str(key)}
    if case == "missing":
        values["TLS_CERT_FILE"] = str(tmp_path / "nothere.pem")
    elif case == "unreadable":
        (tmp_path / "garbage.pem").write_text("not a certificate\n")
        values["TLS_CERT_FILE"] = str(tmp_path / "garbage.pem")
    elif case == "expired":
        values["TLS_CERT_FILE"], values["TLS_KEY_FILE"] = map(
            str, _certificate(tmp_path, days=10, start_days=-20, name="old"))  # fmt: skip
    elif case == "not yet valid":
        values["TLS_CERT_FILE"], values["TLS_KEY_FILE"] = map(
            str, _certificate(tmp_path, days=10, start_days=5, name="future"))  # fmt: skip
    elif case == "expiring":
        values["TLS_CERT_FILE"], values["TLS_KEY_FILE"] = map(
            str, _certificate(tmp_path, days=10, name="soon"))  # fmt: skip
    elif case == "other key":
        values["TLS_KEY_FILE"] = str(_certificate(tmp_path, name="other")[1])
    elif case == "key only":
        values = {"TLS_KEY_FILE": str(key)}
    elif case == "both kinds":
        values["TLS_SELF_SIGNED"] = "true"
    elif case == "http ui":
        values["PREFECT_UI_API_URL"] = f"http://127.0.0.1:{read_env(good)['PREFECT_PORT']}/api"
    lines = _tls_errors(good, **values)
    assert any(message in line for line in lines), lines


def test_tls_off_on_all_interfaces_is_warned(good):
    port = read_env(good)["PREFECT_PORT"]
    findings = check_env_file(with_values(
        good, BIND_ADDRESS="0.0.0.0", PREFECT_UI_API_URL=f"http://prefect.internal:{port}/api"
    ))  # fmt: skip
    warning = next(f for f in findings if f.key == "BIND_ADDRESS")
    assert warning.level == "warning" and "with TLS off" in warning.message
    findings = check_env_file(with_values(
        good, BIND_ADDRESS="0.0.0.0", TLS_SELF_SIGNED="true",
        PREFECT_UI_API_URL=f"https://prefect.internal:{port}/api",
    ))  # fmt: skip
    warning = next(f for f in findings if f.key == "BIND_ADDRESS")
    assert "with TLS off" not in warning.message
