"""The Docker Compose deployment, validated with the real tools that run here:
the Compose v2 binary (config only, no engine), nginx -t, hadolint, shellcheck.
And checked against native mode, which the other tests run for real."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import compose
import pytest
import yaml
from dotenv import dotenv_values
from s3_store import S3_SETTINGS

from prefectstack import generated
from prefectstack.backups import pgbackrest
from prefectstack.checks import S3_OVERRIDE
from prefectstack.loadbalancer import nginx_config
from prefectstack.monitoring.exporter import pgbackrest_source
from prefectstack.native import archiving, topology
from prefectstack.native import postgres as native_postgres
from prefectstack.native.layout import Layout
from prefectstack.native.tools import locate
from prefectstack.prefect_env import shared_env
from prefectstack.settings import CLI_ONLY_KEYS, NATIVE_ONLY_KEYS, load_settings

from conftest import REPO, read_env, state_tmpdir, write_env

DOCKER_COMPOSE = Path(compose.__file__).parent / "docker-compose"  # the Go binary itself
COMPOSE_FILE = REPO / "docker-compose.yml"
PREFECT_SERVER_SERVICES = ("prefect-migrate", "prefect-api", "prefect-background")
ONE_SHOT = {"prefect-migrate"}
# Per-role settings; everything else must be identical in every Prefect server.
ROLE_KEYS = {
    "PREFECT_SERVER_DATABASE_SQLALCHEMY_CONNECT_ARGS_APPLICATION_NAME",
    "PREFECT_SERVER_API_HOST",
    "PREFECT_SERVER_API_PORT",
    "FORWARDED_ALLOW_IPS",
    "PREFECT_SERVER_UI_ENABLED",
}
# compose service -> native service(s); compose-only services with the reason.
NATIVE_NAME = {
    "postgres": "postgres",
    "redis": "redis",
    "prefect-migrate": "migrate",
    "prefect-api": "api-1",
    "prefect-background": "services-1",
    "nginx": "nginx",
    "pgadmin": "pgadmin",
    "redis-ui": "redis-ui",
    "pgbackups": "backups",
    "pgbackrest": "pgbackrest",
    "prometheus": "prometheus",
    "alertmanager": "alertmanager",
    "postgres-exporter": "postgres-exporter",
    "redis-exporter": "redis-exporter",
    "nginx-exporter": "nginx-exporter",
    "nginx-log-exporter": "nginx-log-exporter",
    "prefect-exporter": "prefect-exporter",
}
# Compose services native mode does not run, and why (README: Versions, Docker Compose).
COMPOSE_ONLY = {
    "grafana": "no Debian package; run natively only when installed separately",
    "prefect-worker": "optional profile; natively, start a worker as any client does",
}
PUBLISHED = {
    "nginx": "PREFECT_PORT",
    "pgadmin": "PGADMIN_PORT",
    "redis-ui": "ARDM_PORT",
    "prometheus": "PROMETHEUS_PORT",
    "alertmanager": "ALERTMANAGER_PORT",
    "grafana": "GRAFANA_PORT",
}


def run_compose(env_file: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(DOCKER_COMPOSE), "-f", str(COMPOSE_FILE), "--env-file", str(env_file), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def env_dir():
    directory = state_tmpdir("prefectstack-compose-")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def env_file(env_dir) -> Path:
    # Exactly what a user gets: prefectstack init on .env.example.
    path = env_dir / ".env"
    subprocess.run(
        [sys.executable, "-m", "prefectstack", "init", "--env-file", str(path)],
        check=True,
        capture_output=True,
        cwd=REPO,
    )
    return path


@pytest.fixture(scope="module")
def model(env_file) -> dict:
    result = run_compose(env_file, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def services(model) -> dict:
    return model["services"]


def test_config_succeeds_with_an_initialised_env(env_file):
    result = run_compose(env_file, "config", "--quiet")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "key",
    [
        "POSTGRES_PASSWORD",
        "REDIS_PASSWORD",
        "PREFECT_SERVER_API_AUTH_STRING",
        "PGADMIN_DEFAULT_PASSWORD",
        "REDIS_UI_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
    ],
)
def test_config_fails_clearly_without_a_secret(env_file, tmp_path, key):
    text = re.sub(rf"^{key}=.*$", f"{key}=", env_file.read_text(), flags=re.M)
    bad = tmp_path / ".env"
    bad.write_text(text)
    result = run_compose(bad, "config", "--quiet")
    assert result.returncode != 0
    assert f"required variable {key} is missing a value" in result.stderr
    assert f"{key} is not set in .env - run prefectstack init" in result.stderr


def test_no_version_key_and_project_named_from_env(model):
    assert "version" not in yaml.safe_load(COMPOSE_FILE.read_text())
    assert model["name"] == "prefectstack"


@pytest.mark.parametrize("service", sorted(set(NATIVE_NAME) | set(PUBLISHED)))
def test_listed_services_exist(services, service):
    assert service in services


def long_running(services) -> dict:
    return {name: svc for name, svc in services.items() if name not in ONE_SHOT}


def test_every_long_running_service_is_production_ready(services):
    problems = []
    for name, svc in long_running(services).items():
        image = svc.get("image", "")
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        if not tag or tag == "latest":
            problems.append(f"{name}: image {image!r} has no pinned tag")
        health = svc.get("healthcheck") or {}
        if not health.get("test") or health.get("disable"):
            problems.append(f"{name}: no healthcheck")
        if svc.get("restart") not in ("unless-stopped", "always", "on-failure"):
            problems.append(f"{name}: restart policy {svc.get('restart')!r}")
        log = svc.get("logging") or {}
        if log.get("driver") != "json-file" or not {"max-size", "max-file"} <= set(
            log.get("options", {})
        ):
            problems.append(f"{name}: no log rotation")
        if not svc.get("deploy", {}).get("resources", {}).get("limits", {}).get("memory"):
            problems.append(f"{name}: no memory limit")
    assert not problems, "\n".join(problems)


def test_migrate_is_one_shot_and_gates_the_servers(services):
    migrate = services["prefect-migrate"]
    assert migrate["restart"] == "on-failure"
    assert migrate["command"][:2] == ["sh", "-c"]
    steps = migrate["command"][2].split(" && ")
    assert steps == [
        "prefect server database upgrade -y",
        "python -m prefectstack.compose.register_blocks",
    ]
    for name in ("prefect-api", "prefect-background"):
        deps = services[name]["depends_on"]
        assert deps["prefect-migrate"]["condition"] == "service_completed_successfully"
        assert deps["postgres"]["condition"] == "service_healthy"
        assert deps["redis"]["condition"] == "service_healthy"


def test_databases_are_private(model, services):
    assert model["networks"]["backend"]["internal"] is True
    for name in ("postgres", "redis"):
        assert not services[name].get("ports"), f"{name} publishes a port"
        assert set(services[name]["networks"]) == {"backend"}


def test_published_ports_are_on_frontend_and_bound_to_bind_address(services, env_file):
    env = read_env(env_file)
    for name, svc in services.items():
        if not svc.get("ports"):
            continue
        assert "frontend" in svc["networks"], f"{name} publishes a port off the frontend network"
        for port in svc["ports"]:
            assert port["host_ip"] == env["BIND_ADDRESS"], (name, port)
    published = {name for name, svc in services.items() if svc.get("ports")}
    assert published == set(PUBLISHED)
    for name, key in PUBLISHED.items():
        assert [p["published"] for p in services[name]["ports"]] == [env[key]]


def test_background_services_run_in_several_processes_each_named(services, env_file):
    runners = [
        name
        for name, svc in services.items()
        if "prefect server services start" in " ".join(svc.get("command") or [])
    ]
    assert runners == ["prefect-background"]
    background = services["prefect-background"]
    expected = int(read_env(env_file)["PREFECT_SERVICES_REPLICAS"])
    assert expected >= 2
    assert background["deploy"]["replicas"] == expected
    # Each container names its PostgreSQL connections after its hostname.
    assert background["command"][:2] == ["sh", "-c"]
    # ($$ is compose's escape for a literal $, kept by `config`.)
    assert "APPLICATION_NAME=prefect-services-$$(hostname)" in background["command"][2]
    assert background["command"][2].endswith("exec prefect server services start")
    replicas = services["prefect-api"]["deploy"]["replicas"]
    assert replicas == 3
    assert "ports" not in services["prefect-api"]


def test_every_prefect_server_gets_identical_multi_replica_settings(services):
    envs = {
        name: {k: v for k, v in services[name]["environment"].items() if k not in ROLE_KEYS}
        for name in PREFECT_SERVER_SERVICES
    }
    first = envs["prefect-api"]
    for name, env in envs.items():
        assert env == first, f"{name} differs from prefect-api"
    # ... and they include every fixed setting of deploy/prefect/prefect.env.
    assert shared_env().items() <= first.items()
    for key, value in {
        "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_SERVER_WORKER_CHANNEL_CLEANUP_QUEUE_STORAGE": "prefect_redis.cleanup_queue",
        "PREFECT_API_DATABASE_MIGRATE_ON_START": "false",
        "PREFECT_REDIS_WORKER_CLEANUP_QUEUE_HOST": "redis",
    }.items():
        assert first[key] == value, key
    assert first["PREFECT_SERVER_DOCKET_URL"].endswith("@redis:6379/1")


def test_env_example_and_compose_use_the_same_keys():
    example = set(dotenv_values(REPO / ".env.example"))
    # docker-compose.yml and the overrides a user adds to COMPOSE_FILE.
    text = "".join(path.read_text() for path in sorted(REPO.glob("docker-compose*.yml")))
    # COMPOSE_FILE is read by docker compose itself, not interpolated.
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", text)) | {"COMPOSE_FILE"}
    assert used <= example, f"compose uses keys missing from .env.example: {used - example}"
    unused = example - used - NATIVE_ONLY_KEYS - CLI_ONLY_KEYS
    assert not unused, f".env.example keys used by neither mode: {unused}"
    assert not (NATIVE_ONLY_KEYS & used), "a native-only key is used by compose"


def test_every_bind_mount_source_exists(services):
    missing = []
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            # Created on first backup (the pgBackRest repository by the postgres image).
            backups = volume["target"] in ("/backups", "/pgbackrest")
            ours = volume["type"] == "bind" and volume["source"].startswith(str(REPO))
            if ours and not backups and not Path(volume["source"]).exists():
                missing.append(f"{name}: {volume['source']}")
        for env_file in svc.get("env_file", []):
            assert Path(env_file["path"]).exists()
    assert not missing, missing


def test_committed_rendered_configs_are_current():
    assert generated.stale() == [], "run `prefectstack generate`"


def nginx_test(conf_text: str, tmp_path: Path) -> subprocess.CompletedProcess:
    conf = tmp_path / "nginx.conf"
    conf.write_text(conf_text)
    (tmp_path / "logs").mkdir(exist_ok=True)
    return subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_compose_nginx_conf_passes_nginx_t(tmp_path):
    text = (REPO / "deploy" / nginx_config.COMPOSE_CONF).read_text()
    # What a Docker network provides: the names resolve and the paths exist.
    # Debian's nginx 1.22 predates `server ... resolve` (1.27.3), so that one
    # parameter is checked structurally below instead.
    upstream = f"server {nginx_config.COMPOSE_API_SERVICE}:{nginx_config.COMPOSE_API_PORT} resolve"
    assert re.search(rf"^\s+{upstream} max_fails=1 fail_timeout=5s;$", text, re.M)
    assert re.search(r"^\s+zone prefect_api \d+k;$", text, re.M)
    assert re.search(r"^\s+resolver 127\.0\.0\.11 ", text, re.M)
    stubbed = (
        text.replace(upstream, "server 127.0.0.1:4200")
        .replace(f"{nginx_config.COMPOSE_LOG_EXPORTER}:", "127.0.0.1:")
        .replace("/var/run/nginx.pid", str(tmp_path / "nginx.pid"))
    )
    result = nginx_test(stubbed, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_native_nginx_conf_passes_nginx_t(tmp_path):
    (tmp_path / "tmp").mkdir()  # native mode creates it in the state directory
    conf = nginx_config.native_conf(
        listen="127.0.0.1:4200",
        api_addresses=["127.0.0.1:4201", "127.0.0.1:4202"],
        status_listen="127.0.0.1:8080",
        run_dir=tmp_path,
        nginx_dir=tmp_path,
        log_exporter="127.0.0.1:3903",
    )
    result = nginx_test(conf, tmp_path)
    assert result.returncode == 0, result.stderr


def test_nginx_conf_has_what_prefect_needs():
    text = (REPO / "deploy" / nginx_config.COMPOSE_CONF).read_text()
    assert "least_conn;" in text
    assert re.search(r"client_max_body_size (\d+)m;", text)
    assert int(re.search(r"client_max_body_size (\d+)m;", text).group(1)) >= 5
    routes = re.search(r"location ~ \^/api/\((.+)\)\$ \{", text).group(1)
    for route in (
        "events/(in|out)",
        "logs/out",
        "task_runs/subscriptions/scheduled",
        "work_pools/[^/]+/workers/connect",
    ):
        assert route in routes
    assert "proxy_set_header Upgrade $http_upgrade;" in text
    next_upstream = re.search(r"proxy_next_upstream ([^;]+);", text).group(1).split()
    assert "non_idempotent" not in next_upstream
    assert "error" in next_upstream
    keepalive = int(re.search(r"keepalive_timeout (\d+)s;", text).group(1))
    assert keepalive < int(shared_env()["PREFECT_SERVER_API_KEEPALIVE_TIMEOUT"])


@pytest.mark.parametrize(
    "dockerfile",
    sorted(
        str(p.relative_to(REPO))
        for p in REPO.rglob("Dockerfile")
        if ".venv" not in p.parts and ".tools" not in p.parts
    ),
)
def test_dockerfiles_pass_hadolint(dockerfile):
    hadolint = Path(shutil.which("hadolint") or REPO / ".venv" / "bin" / "hadolint")
    result = subprocess.run(
        [str(hadolint), dockerfile], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def shell_scripts() -> list[str]:
    found = []
    for path in REPO.rglob("*"):
        if not path.is_file() or {".venv", ".tools", ".git", "node_modules"} & set(path.parts):
            continue
        if path.suffix == ".sh" or (
            path.read_bytes()[:2] == b"#!" and b"sh" in path.read_bytes().split(b"\n", 1)[0]
        ):
            found.append(str(path.relative_to(REPO)))
    return sorted(found)


def test_shell_scripts_are_found():
    assert {"scripts/install_native.sh", "scripts/quickstart.sh", ".ci/run"} <= set(shell_scripts())


@pytest.mark.parametrize("script", shell_scripts())
def test_shell_scripts_pass_shellcheck(script):
    result = subprocess.run(
        ["shellcheck", script], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert result.returncode == 0, result.stdout


# --- compose and native mode agree ------------------------------------------------


@pytest.fixture(scope="module")
def native(env_file):
    # The same .env as the compose model: only the addresses may differ.
    settings = load_settings(env_file)
    services, _ = topology.build(settings, Layout(settings.state_dir), locate())
    return settings, {svc.name: svc for svc in services}


def test_native_services_of_postgres_account_read_nothing_from_the_checkout(native):
    """As root, PostgreSQL and the pgBackRest scheduler run as 'postgres', which
    cannot enter a checkout under /root: their files are in the state directory."""
    _, native_services = native
    as_postgres = [svc for svc in native_services.values() if svc.user]
    assert {svc.name for svc in as_postgres} >= {"postgres", "pgbackrest"} or not as_postgres
    for svc in as_postgres:
        assert not [arg for arg in svc.argv if str(REPO) in arg], svc.name


def test_same_services_except_documented_ones(model, native):
    _, native_services = native
    # config lists profile services only when the profile is on; read the file itself.
    declared = set(yaml.safe_load(COMPOSE_FILE.read_text())["services"])
    assert declared == set(NATIVE_NAME) | set(COMPOSE_ONLY)
    for compose_name, native_name in NATIVE_NAME.items():
        assert compose_name in model["services"]
        assert native_name in native_services, f"native mode lacks {native_name}"
    for prefix, compose_name in (("api-", "prefect-api"), ("services-", "prefect-background")):
        replicas = [name for name in native_services if name.startswith(prefix)]
        assert len(replicas) == model["services"][compose_name]["deploy"]["replicas"]


def test_same_prefect_settings_in_both_modes(services, native):
    _, native_services = native
    compose_env = services["prefect-api"]["environment"]
    native_env = native_services["api-1"].env
    prefect_keys = {k for k in compose_env if k.startswith("PREFECT_")}
    native_keys = {k for k in native_env if k.startswith("PREFECT_")}
    # Native replicas also point PREFECT_HOME and the UI bundle into the state dir.
    assert prefect_keys ^ native_keys <= {"PREFECT_HOME", "PREFECT_UI_STATIC_DIRECTORY"}
    for key in sorted(prefect_keys & native_keys - ROLE_KEYS):
        # Compose reaches its databases by service name, native mode on loopback.
        expected = re.sub(
            r"(?<=@)(postgres|redis)(?=:)|^(postgres|redis)$", "127.0.0.1", compose_env[key]
        )
        assert native_env[key] == expected, key


def test_same_postgres_server_settings(services, native):
    settings, native_services = native
    command = services["postgres"]["command"]
    flags = [command[i + 1] for i, arg in enumerate(command) if arg == "-c"]
    # The archive command differs only in where pgBackRest's options come from.
    compose_flags = [f for f in flags if not f.startswith(("port=", "archive_command="))]
    native_flags = native_postgres.server_flags(settings)
    norm = {"max_connections", "shared_buffers", "archive_timeout"}  # values from each .env
    assert [f.split("=")[0] for f in compose_flags] == [f.split("=")[0] for f in native_flags]
    assert [f for f in compose_flags if f.split("=")[0] not in norm] == [
        f for f in native_flags if f.split("=")[0] not in norm
    ]
    assert "archive_command=pgbackrest archive-push %p" in flags
    native_argv = native_services["postgres"].argv
    config = archiving.config_path(Layout(settings.state_dir))
    expected = f"--config={config} --stanza={settings.project_name} archive-push %p"
    assert f"archive_command=pgbackrest {expected}" in native_argv


def test_same_pgbackrest_options_in_both_modes(services, native):
    """Compose's PGBACKREST_* variables are native mode's config file, paths aside."""
    settings, _ = native
    layout = Layout(settings.state_dir)
    native_options = archiving.options(layout, settings)
    paths = {"repo1-path", "pg1-path", "pg1-port", "pg1-socket-path", "log-path", "lock-path"}
    expected = pgbackrest.env_vars(
        {k: v for k, v in native_options.items() if k not in paths}, settings.project_name
    )
    for name in ("postgres", "pgbackrest"):
        env = services[name]["environment"]
        got = {k: v for k, v in env.items() if k.startswith("PGBACKREST_")}
        path_keys = {f"PGBACKREST_{k.upper().replace('-', '_')}" for k in paths}
        assert {k: v for k, v in got.items() if k not in path_keys} == expected, name
        assert set(got) == set(expected) | path_keys, name


def test_s3_override_gives_the_store_to_every_pgbackrest_user(env_file, env_dir):
    """docker-compose.s3.yml: the server's archive-push, the scheduler and the
    exporter get native mode's S3 options, and the CA at its mount point."""
    ca = env_dir / "s3-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    s3_env = write_env(
        env_dir / "s3.env",
        read_env(env_file)
        | S3_SETTINGS
        | {"PGBACKREST_S3_CA_FILE": str(ca), "COMPOSE_FILE": f"docker-compose.yml:{S3_OVERRIDE}"},
    )
    result = subprocess.run(
        [str(DOCKER_COMPOSE), "-f", str(COMPOSE_FILE), "-f", str(REPO / S3_OVERRIDE),
         "--env-file", str(s3_env), "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    options = pgbackrest.repo_options(load_settings(s3_env), Path("/unused"))
    assert options.pop("repo1-storage-ca-file") == str(ca)
    expected = pgbackrest.env_vars(options, load_settings(s3_env).project_name)
    for name in ("postgres", "pgbackrest", "prefect-exporter"):
        env = services[name]["environment"]
        assert {k: env.get(k) for k in expected} == expected, name
        assert env["PGBACKREST_REPO1_STORAGE_CA_FILE"] == "/etc/prefectstack/s3-ca.pem"
        sources = {v["target"]: v["source"] for v in services[name]["volumes"]}
        assert sources["/etc/prefectstack/s3-ca.pem"] == str(ca), name
    exporter = services["prefect-exporter"]["environment"]
    assert isinstance(pgbackrest_source(exporter), pgbackrest.PgBackRest)


def test_same_published_ports_from_the_same_keys(native):
    settings, native_services = native
    for compose_name, key in PUBLISHED.items():
        native_name = NATIVE_NAME.get(compose_name)
        if native_name is None:
            continue
        assert native_services[native_name].port == getattr(settings, key.lower())
        assert native_services[native_name].port_key == key
