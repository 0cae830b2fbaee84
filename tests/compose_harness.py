"""Test harness for the compose deployment: one real compose project for the
compose tests, on the registry-free local images (built, or reused from the layer
cache, by `prefectstack images build`), on free host ports, with a generated
.env exactly like a user's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import compose
import pytest

from conftest import PREFECTSTACK, PRIVATE_CWD, REPO, Stack, make_env_file, read_env, state_tmpdir

DOCKER_COMPOSE = Path(compose.__file__).parent / "docker-compose"  # the Compose v2 binary
LOCAL_IMAGES = "docker-compose.yml:docker-compose.local-images.yml"
PGBACKUPS_UID = 999  # the postgres account of the pgbackups image


def engine_or_fail() -> None:
    """In CI a missing engine fails the suite; on a workstation it skips compose."""
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        message = f"no Docker engine answers: {probe.stderr.strip()[-300:]}"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@dataclass
class ComposeStack(Stack):
    """A compose project; the Stack API (lb, client, run_flow, cli) works on it."""

    @property
    def project(self) -> str:
        return self.env["PROJECT_NAME"]

    def compose(self, *args: str, timeout: float = 900, check: bool = True):
        files = [a for f in self.env["COMPOSE_FILE"].split(":") for a in ("-f", str(REPO / f))]
        command = [str(DOCKER_COMPOSE), "--project-directory", str(REPO), *files,
                   "--env-file", str(self.env_file), *args]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if args[0] == "down" and "has active endpoints" in result.stderr:
            # Debian's Docker 20.10 releases a removed container's network endpoint
            # a moment late; the README tells users to run `down` again, as here.
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker compose {' '.join(args)} exited {result.returncode}\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def cli(self, *args: str, check: bool = True, timeout: float = 600):
        return super().cli(*args, "--mode", "compose", check=check, timeout=timeout)

    def containers(self, service: str | None = None) -> list[dict]:
        args = ["ps", "--all", "--format", "json"] + ([service] if service else [])
        out = self.compose(*args).stdout.strip()
        if out.startswith("["):
            return json.loads(out)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def volumes(self) -> list[str]:
        label = f"label=com.docker.compose.project={self.project}"
        return subprocess.run(
            ["docker", "volume", "ls", "-q", "--filter", label],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip

    def diagnose(self) -> str:
        """The health-check output and log tail of every container that is not healthy."""
        lines = []
        for row in self.containers():
            if row["Health"] in ("", "healthy") and row["State"] in ("running", "exited"):
                continue
            health = subprocess.run(
                ["docker", "inspect", "-f", "{{json .State.Health}}", row["ID"]],
                capture_output=True, text=True, check=False,
            ).stdout  # fmt: skip
            logs = subprocess.run(
                ["docker", "logs", "--tail", "30", row["ID"]],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            lines += [f"== {row['Name']} {row['State']} {row['Health']}", health[-2000:],
                      logs.stdout[-2000:], logs.stderr[-2000:]]  # fmt: skip
        return "\n".join(lines)

    def network(self, name: str) -> str:
        return f"{self.project}_{name}"


def build_images() -> None:
    result = subprocess.run(
        [*PREFECTSTACK, "images", "build"],
        capture_output=True, text=True, timeout=3000, cwd=PRIVATE_CWD, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise AssertionError(f"prefectstack images build failed:\n{result.stdout}\n{result.stderr}")


# Module scope: the project is removed once its tests end, before the native
# stacks' tests start on the same two cores.
@pytest.fixture(scope="module")
def compose_stack():
    engine_or_fail()
    build_images()
    directory = state_tmpdir("prefectstack-compose-e2e-")
    backups = directory / "backups"
    backups.mkdir()
    os.chown(backups, PGBACKUPS_UID, PGBACKUPS_UID)
    env_file = make_env_file(
        directory,
        PROJECT_NAME=f"pstc{os.getpid()}",
        COMPOSE_FILE=LOCAL_IMAGES,
        # Absolute: compose reads relative paths from the checkout, not from .env's folder.
        BACKUP_DIR=str(backups),
        STATE_DIR=str(directory / "state"),
    )
    stack = ComposeStack(env_file, read_env(env_file))
    try:
        up = stack.compose("up", "-d", "--wait", "--wait-timeout", "600", check=False)
        if up.returncode != 0:
            raise AssertionError(
                f"docker compose up failed:\n{up.stderr[-1500:]}\n{stack.diagnose()}"
            )
        yield stack
    finally:
        stack.compose("down", "-v", "--timeout", "20", check=False)
        if os.environ.get("PREFECTSTACK_KEEP_STATE") != "1":
            shutil.rmtree(directory, ignore_errors=True)
