"""Test harness: one real native stack per test session, on free ports in a
temporary state directory, driven through the `prefectstack` CLI."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from websockets.sync.client import ClientConnection, connect

from prefectstack.localports import free_port_values

REPO = Path(__file__).resolve().parents[1]
FLOWS = Path(__file__).parent / "flows"
PREFECTSTACK = [sys.executable, "-m", "prefectstack"]

REPLICAS = 3
# The CLI runs from a directory only root can enter, like a checkout under /root:
# nothing may depend on other accounts (postgres) reaching the caller's cwd.
PRIVATE_CWD = Path(tempfile.mkdtemp(prefix="prefectstack-cwd-"))
PRIVATE_CWD.chmod(0o700)
atexit.register(shutil.rmtree, PRIVATE_CWD, True)


def secret(tag: str) -> str:
    return f"{tag}{os.urandom(12).hex()}"


def make_env_file(directory: Path, **overrides: str) -> Path:
    values = free_port_values(REPLICAS + 1)  # one spare for the scaling test
    values.update(
        STATE_DIR="./state",
        BACKUP_DIR="./backups",
        PROJECT_NAME="pstest",
        PREFECT_API_REPLICAS=str(REPLICAS),
        POSTGRES_PASSWORD=secret("pg"),
        REDIS_PASSWORD=secret("rd"),
        PREFECT_SERVER_API_AUTH_STRING=f"admin:{secret('auth')}",
        PGADMIN_DEFAULT_EMAIL="admin@example.com",
        PGADMIN_DEFAULT_PASSWORD=secret("pga"),
        REDIS_UI_PASSWORD=secret("rui"),
        GRAFANA_ADMIN_PASSWORD=secret("gf"),
        # Scheduled backups happen during the session, not once a day.
        BACKUP_SCHEDULE="@every 1m",
        # WAL reaches the pgBackRest repository within seconds, and the retention
        # test sees the vacuum act within a minute (on data it makes two days old).
        WAL_ARCHIVE_TIMEOUT="15",
        DB_VACUUM="events,flow_runs",
        EVENTS_RETENTION="1d",
        HEARTBEAT_EVENTS_RETENTION="1d",
        FLOW_RUN_RETENTION="1d",
        DB_VACUUM_INTERVAL_SECONDS="15",
        DB_ORPHAN_CLEANUP_INTERVAL_SECONDS="15",
    )
    values.update(overrides)
    return write_env(directory / ".env", values)


def write_env(path: Path, values: dict[str, str]) -> Path:
    """.env.example with `values` filled in, as `prefectstack init` would write it."""
    lines, seen = [], set()
    for line in (REPO / ".env.example").read_text().splitlines():
        key = line.split("=", 1)[0]
        if "=" in line and not line.startswith("#") and key in values:
            line = f"{key}={values[key]}"
            seen.add(key)
        lines.append(line)
    lines += [f"{k}={v}" for k, v in values.items() if k not in seen]
    path.write_text("\n".join(lines) + "\n")
    return path


def state_tmpdir(prefix: str) -> Path:
    # PostgreSQL runs as the 'postgres' account when tests run as root: it must
    # be able to reach the state directory, so no 0700 pytest tmp dirs here.
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


@contextmanager
def port_taken(port: int) -> Iterator[None]:
    """Hold a loopback listener on PORT, as another program would."""
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", port))
    squatter.listen()
    try:
        yield
    finally:
        squatter.close()


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


@dataclass
class Stack:
    env_file: Path
    env: dict[str, str]
    s3: Any = None  # the S3 store of a stack whose repository is there (s3_store.S3Store)

    @property
    def dir(self) -> Path:
        return self.env_file.parent

    @property
    def state(self) -> Path:
        return self.dir / "state"

    @property
    def tls_ca(self) -> Path | None:
        """The CA of a stack with a self-signed certificate (what clients trust)."""
        return self.state / "tls" / "ca.pem" if self.env.get("TLS_SELF_SIGNED") == "true" else None

    @property
    def lb(self) -> str:
        scheme = "https" if self.tls_ca else "http"
        return f"{scheme}://127.0.0.1:{self.env['PREFECT_PORT']}"

    @property
    def api(self) -> str:
        return f"{self.lb}/api"

    @contextmanager
    def events_socket(self) -> Iterator[ClientConnection]:
        """An authenticated /api/events/out websocket through the load balancer
        (trusting the stack's CA, with TLS)."""
        url = self.lb.replace("http", "ws", 1) + "/api/events/out"
        trust = ssl.create_default_context(cafile=str(self.tls_ca)) if self.tls_ca else None
        with connect(url, subprotocols=["prefect"], open_timeout=10, ssl=trust) as ws:
            ws.send(json.dumps({"type": "auth", "token": self.auth_string}))
            assert json.loads(ws.recv(timeout=10))["type"] == "auth_success"
            yield ws

    @property
    def auth_string(self) -> str:
        return self.env["PREFECT_SERVER_API_AUTH_STRING"]

    @property
    def auth(self) -> tuple[str, str]:
        user, _, password = self.auth_string.partition(":")
        return user, password

    @property
    def api_ports(self) -> list[int]:
        first = int(self.env["PREFECT_API_FIRST_PORT"])
        return [first + i for i in range(int(self.env["PREFECT_API_REPLICAS"]))]

    def cli(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [*PREFECTSTACK, *args, "--env-file", str(self.env_file)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=PRIVATE_CWD,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"prefectstack {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def status(self) -> dict[str, dict]:
        result = self.cli("status", "--json", check=False)
        return {row["name"]: row for row in json.loads(result.stdout)}

    def client(self) -> httpx.Client:
        verify = str(self.tls_ca) if self.tls_ca else True
        return httpx.Client(base_url=self.api, auth=self.auth, timeout=30, verify=verify)

    def client_env(self, home: Path) -> dict[str, str]:
        """A clean environment for Prefect client processes (flows)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            PREFECT_API_URL=self.api,
            PREFECT_API_AUTH_STRING=self.auth_string,
            PREFECT_HOME=str(home),
            PREFECT_LOGGING_TO_API_ENABLED="true",
        )
        if self.tls_ca:
            env["PREFECT_API_SSL_CERT_FILE"] = str(self.tls_ca)
        return env

    def run_flow(self, script: str, *args: str, home: Path, timeout: float = 300) -> dict:
        """Run tests/flows/<script> as a client process; return its JSON result."""
        result = subprocess.run(
            [sys.executable, str(FLOWS / script), *args],
            env=self.client_env(home),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, f"{script} failed:\n{result.stdout}\n{result.stderr}"
        return json.loads(result.stdout.strip().splitlines()[-1])

    def db(self) -> psycopg.Connection:
        """The stack's Prefect database, straight (native mode's loopback port)."""
        return psycopg.connect(
            host="127.0.0.1", port=int(self.env["POSTGRES_PORT"]), user=self.env["POSTGRES_USER"],
            password=self.env["POSTGRES_PASSWORD"], dbname=self.env["POSTGRES_DB"],
            autocommit=True,
        )  # fmt: skip

    def pids(self) -> list[int]:
        return [row["pid"] for row in self.status().values() if row["pid"]]


@contextmanager
def extra_stack(prefix: str, directory: Path | None = None, **overrides: str) -> Iterator[Stack]:
    """Another native stack, beside the session's, with OVERRIDES in its .env."""
    directory = directory or state_tmpdir(prefix)
    env_file = make_env_file(directory, **overrides)
    stack = Stack(env_file, read_env(env_file))
    try:
        stack.cli("up", timeout=1200)
        yield stack
    finally:
        _stop(stack)
        if os.environ.get("PREFECTSTACK_KEEP_STATE") != "1":
            shutil.rmtree(directory, ignore_errors=True)


def _stop(stack: Stack) -> None:
    subprocess.run(
        [*PREFECTSTACK, "down", "--env-file", str(stack.env_file)],
        capture_output=True,
        timeout=300,
        cwd=PRIVATE_CWD,
        check=False,
    )


@pytest.fixture(scope="session")
def stack() -> Stack:
    directory = state_tmpdir("prefectstack-e2e-")
    env_file = make_env_file(directory)
    stack = Stack(env_file, read_env(env_file))
    try:
        stack.cli("up")
        yield stack
    finally:
        _stop(stack)
        if os.environ.get("PREFECTSTACK_KEEP_STATE") != "1":
            shutil.rmtree(directory, ignore_errors=True)


# The release the second stack starts on (test_upgrade moves it to the bundled one).
SECOND_STACK_PREFECT = "3.9.0"


@pytest.fixture(scope="session")
def second_stack() -> Iterator[Stack]:
    """One more native stack, started once, for what the session stack does not
    run: TLS with a self-signed certificate, an older Prefect release and a
    pgBackRest repository in an S3-compatible store (moto's server; `stack.s3`
    is the store)."""
    from s3_store import s3_store

    directory = state_tmpdir("prefectstack-second-")
    with s3_store(directory / "s3") as store:
        overrides = {"PREFECT_VERSION": SECOND_STACK_PREFECT, "PREFECT_API_REPLICAS": "2",
                     "TLS_SELF_SIGNED": "true", **store.settings()}  # fmt: skip
        with extra_stack("", directory, **overrides) as s:
            s.s3 = store
            yield s


@pytest.fixture()
def client_home(tmp_path: Path) -> Path:
    home = tmp_path / "prefect-home"
    home.mkdir()
    return home
