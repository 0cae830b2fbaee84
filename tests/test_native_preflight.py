"""`up` refuses, before starting anything, when it cannot succeed."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

import pytest

from prefectstack.native import postgres
from prefectstack.native.layout import Layout
from prefectstack.native.tools import locate
from prefectstack.settings import load_settings

from conftest import PREFECTSTACK, REPO, make_env_file, read_env, state_tmpdir


@pytest.fixture()
def fresh():
    directory = state_tmpdir("prefectstack-preflight-")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def up(env_file, env=None):
    return subprocess.run(
        [*PREFECTSTACK, "up", "--env-file", str(env_file)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=env,
        check=False,
    )


def test_port_in_use_is_named_with_its_key_before_anything_starts(fresh):
    env_file = make_env_file(fresh)
    port = int(read_env(env_file)["PREFECT_PORT"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = up(env_file)
    assert result.returncode != 0
    assert (
        f"nginx (PREFECT_PORT={port}): TCP port {port} on 127.0.0.1 is already in use"
        in result.stderr
    )
    assert not (fresh / "state" / "run" / "supervisord.pid").exists()
    assert not (fresh / "state" / "postgres").exists()


def test_two_services_on_one_port_are_rejected(fresh):
    env_file = make_env_file(fresh)
    port = read_env(env_file)["POSTGRES_PORT"]
    env_file.write_text(env_file.read_text() + f"NGINX_STATUS_PORT={port}\n")
    result = up(env_file)
    assert result.returncode != 0
    assert f"port {port} is configured for both postgres" in result.stderr


def test_invalid_configuration_names_the_key_and_starts_nothing(fresh):
    env_file = make_env_file(fresh, PREFECT_API_REPLICAS="0", REDIS_PASSWORD="")
    result = up(env_file)
    assert result.returncode != 0
    assert "PREFECT_API_REPLICAS: Input should be greater than or equal to 1" in result.stderr
    assert "REDIS_PASSWORD: is required but not set" in result.stderr
    assert not (fresh / "state").exists()


def test_missing_binary_is_named_with_the_fix(fresh, tmp_path):
    env_file = make_env_file(fresh)
    env = {**os.environ, "PATH": str(tmp_path)}  # no redis-server on this PATH
    result = up(env_file, env=env)
    assert result.returncode != 0
    assert "redis-server not found" in result.stderr
    assert "apt-get install redis-server" in result.stderr
    assert not (fresh / "state").exists()


def test_missing_env_file_points_at_init(fresh):
    result = up(fresh / "missing.env")
    assert result.returncode != 0
    assert "prefectstack init" in result.stderr


def test_a_cluster_made_with_other_credentials_is_refused(fresh):
    env_file = make_env_file(fresh)
    settings = load_settings(env_file)
    layout = Layout(settings.state_dir)
    layout.root.mkdir(parents=True)
    layout.root.chmod(0o755)
    assert postgres.initdb(locate().pg_bindir, layout, settings)
    text = env_file.read_text().replace(
        f"POSTGRES_PASSWORD={read_env(env_file)['POSTGRES_PASSWORD']}",
        "POSTGRES_PASSWORD=anotherLongPassword12345",
    )
    env_file.write_text(text)
    result = up(env_file)
    assert result.returncode != 0
    assert "was created with another POSTGRES_USER/POSTGRES_PASSWORD" in result.stderr
    assert not layout.supervisor_pid.exists()
