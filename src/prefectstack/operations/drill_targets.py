"""What a drill kills and watches, per deployment mode.

A component is one or more processes killed together with SIGKILL, as a crash
would: the supervisor (native) or Docker's restart policy (compose) must bring
them back. Compose containers are killed through their main process's host PID,
not `docker kill`, which Docker counts as a manual stop and does not restart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass
from typing import ClassVar

# Components in the order a drill takes them; names shared by both modes.
COMPONENTS = ("api", "services", "redis", "postgres", "nginx", "monitoring")
MONITORING = (
    "prometheus",
    "alertmanager",
    "postgres-exporter",
    "redis-exporter",
    "nginx-exporter",
    "nginx-log-exporter",
    "prefect-exporter",
)


class DrillError(Exception):
    pass


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str


class NativeTarget:
    """The native stack: supervisord programs."""

    PROGRAMS: ClassVar[dict[str, tuple[str, ...]]] = {
        "api": ("api-1",),
        "services": ("services-1",),
        "redis": ("redis",),
        "postgres": ("postgres",),
        "nginx": ("nginx",),
        "monitoring": MONITORING,
    }

    def __init__(self, stack):
        self.stack = stack

    def programs(self, component: str) -> list[str]:
        running = {svc.name for svc in self.stack.services}
        return [name for name in self.PROGRAMS[component] if name in running]

    def pids(self, component: str) -> dict[str, int]:
        return {name: self.stack.sup.info(name).pid for name in self.programs(component)}

    def kill(self, component: str) -> dict[str, int]:
        return {name: self.stack.kill(name) for name in self.programs(component)}

    def health(self) -> Health:
        rows = self.stack.status()
        bad = [f"{r.name} {r.health}" for r in rows if not r.healthy]
        return Health(not bad, ", ".join(bad) or f"all {len(rows)} services healthy")


class ComposeTarget:
    """The compose project: one container per component (all of a group)."""

    SERVICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "api": ("prefect-api",),
        "services": ("prefect-background",),
        "redis": ("redis",),
        "postgres": ("postgres",),
        "nginx": ("nginx",),
        "monitoring": MONITORING,
    }
    SCALED = ("prefect-api", "prefect-background")  # kill one replica, not all

    def __init__(self, compose_argv: list[str]):
        self.compose = compose_argv

    def _containers(self) -> list[dict]:
        out = subprocess.run(
            [*self.compose, "ps", "--all", "--format", "json"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if out.returncode != 0:
            raise DrillError(f"docker compose ps failed: {out.stderr.strip()}")
        text = out.stdout.strip()
        if text.startswith("["):
            return json.loads(text)
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def _chosen(self, component: str) -> list[dict]:
        rows = sorted(self._containers(), key=lambda r: r["Name"])
        chosen = []
        for service in self.SERVICES[component]:
            mine = [r for r in rows if r["Service"] == service and r["State"] == "running"]
            chosen += mine[:1] if service in self.SCALED else mine
        return chosen

    def pids(self, component: str) -> dict[str, int]:
        return {row["Name"]: _main_pid(row["ID"]) for row in self._chosen(component)}

    def kill(self, component: str) -> dict[str, int]:
        pids = self.pids(component)
        if not pids:
            raise DrillError(f"{component}: no running container to kill")
        for pid in pids.values():
            try:
                os.kill(pid, signal.SIGKILL)
            except PermissionError:
                raise DrillError(
                    "killing a container's process needs root on the Docker host "
                    "(docker kill would count as a manual stop and not restart it)"
                ) from None
        return pids

    def health(self) -> Health:
        bad = []
        rows = self._containers()
        for row in rows:
            if row["Service"] == "prefect-migrate":
                continue  # one-shot
            if row["State"] != "running" or row["Health"] not in ("", "healthy"):
                bad.append(f"{row['Name']} {row['State']} {row['Health']}".strip())
        return Health(not bad, ", ".join(bad) or f"all {len(rows)} containers healthy")


def _main_pid(container: str) -> int:
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Pid}}", container],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return int(out.stdout.strip() or 0)
