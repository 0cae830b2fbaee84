"""`prefectstack rollout --mode compose`: every API replica, then every
background-services container, replaced one at a time by a container of the
current configuration and image, with no request failing on the way.

`docker compose up -d` would recreate every changed container of a service at
once. Instead, for each old container: one more container of the service is
created from the current model (`up --no-recreate --scale N+1`), and once it is
healthy (and, for a replica, nginx has had the time to resolve it: nginx follows
Docker's DNS, `resolver ... valid=`) the old one is stopped gracefully and
removed. A stopping replica closes its listening socket first, so nginx sends
new connections to the others (a refused connection is always retried
elsewhere), finishes its in-flight requests and closes its websockets, whose
clients reconnect through nginx. A new container that does not become healthy
stops the rollout: it is removed, the old containers keep serving.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..settings import StackSettings
from .operations import ComposeError, base

# nginx re-resolves `prefect-api` this often (deploy/nginx/nginx.conf.j2,
# `resolver 127.0.0.11 valid=5s`); a new replica gets traffic within it.
NGINX_RESOLVE_S = 5.0
HEALTHY_TIMEOUT_S = 300.0
STOP_GRACE_S = 30  # the services' stop_grace_period in docker-compose.yml
CHECK_TIMEOUT_S = 5  # the services' healthcheck timeout
RESTARTS_ALLOWED = 2  # a new container exiting this often at start will not come up


class RolloutError(ComposeError):
    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    number: int


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise ComposeError(f"docker {' '.join(args)}: {result.stderr.strip()}")
    return result


def _passes_check_now(found: dict) -> bool:
    """The container's own health check, run now: Docker runs it only every
    `interval` (10 s), which a rollout would otherwise wait out per container."""
    test = (found["Config"].get("Healthcheck") or {}).get("Test") or []
    if len(test) < 2 or test[0] not in ("CMD", "CMD-SHELL"):
        return False
    argv = test[1:] if test[0] == "CMD" else ["sh", "-c", test[1]]
    try:
        result = subprocess.run(["docker", "exec", found["Id"], *argv], capture_output=True,
                                timeout=CHECK_TIMEOUT_S, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


class ComposeRollout:
    def __init__(self, s: StackSettings, say: Callable[[str], None]):
        self.compose = base(s)
        self.say = say
        self.replicas = {
            "prefect-api": s.prefect_api_replicas,
            "prefect-background": s.prefect_services_replicas,
        }

    def _compose(self, *args: str) -> str:
        result = subprocess.run([*self.compose, *args], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ComposeError(f"docker compose {' '.join(args)}: {result.stderr.strip()[-1500:]}")
        return result.stdout

    def containers(self, service: str) -> list[Container]:
        """The service's running containers, oldest number first."""
        ids = self._compose("ps", "-q", service).split()
        if not ids:
            return []
        found = json.loads(_docker("inspect", *ids).stdout)
        return sorted(
            (
                Container(
                    c["Id"],
                    c["Name"].lstrip("/"),
                    int(c["Config"]["Labels"]["com.docker.compose.container-number"]),
                )
                for c in found
                if c["State"]["Running"]
            ),
            key=lambda c: c.number,
        )

    def _logs(self, container: Container) -> str:
        out = _docker("logs", "--tail", "20", container.id, check=False)
        return (out.stdout + out.stderr).strip()[-2000:]

    def _wait_healthy(self, container: Container) -> str | None:
        """None once healthy, else why not."""
        deadline = time.monotonic() + HEALTHY_TIMEOUT_S
        while True:
            found = json.loads(_docker("inspect", container.id).stdout)[0]
            state = found["State"]
            health = (state.get("Health") or {}).get("Status")
            if health == "healthy" or (state["Running"] and _passes_check_now(found)):
                return None
            if health == "unhealthy" or state["Status"] == "dead":
                return f"{state['Status']}, health {health}"
            if found["RestartCount"] >= RESTARTS_ALLOWED:
                return f"it exited {found['RestartCount']} times at start"
            if time.monotonic() > deadline:
                return f"not healthy within {HEALTHY_TIMEOUT_S:.0f}s"
            time.sleep(1)

    def add(self, service: str) -> Container:
        """One more container of SERVICE from the current model, healthy."""
        before = {c.id for c in self.containers(service)}
        self._compose(
            "up", "-d", "--no-deps", "--no-recreate", "--scale",
            f"{service}={len(before) + 1}", service,
        )  # fmt: skip
        new = [c for c in self.containers(service) if c.id not in before]
        if len(new) != 1:
            raise RolloutError([f"{service}: expected one new container, found {len(new)}"])
        container = new[0]
        self.say(f"{container.name}: started with the current configuration, waiting until healthy")
        problem = self._wait_healthy(container)
        if problem:
            logs = self._logs(container)
            self.remove(container)
            raise RolloutError(
                [f"rollout stopped at {container.name} ({service}): {problem}; it was removed, "
                 "the old containers keep serving", f"its last log lines:\n{logs}"]
            )  # fmt: skip
        return container

    def remove(self, container: Container) -> None:
        """Graceful stop (SIGTERM, then SIGKILL after the grace period), then remove."""
        _docker("stop", "-t", str(STOP_GRACE_S), container.id, check=False)
        _docker("rm", "-f", container.id, check=False)

    def roll(self, service: str) -> list[str]:
        old = self.containers(service)
        wanted = self.replicas[service]
        if not old:
            raise RolloutError([f"no {service} container is running: start the stack first"])
        rolled = []
        for index in range(max(wanted, len(old))):
            if index < wanted:
                new = self.add(service)
                if service == "prefect-api":
                    time.sleep(NGINX_RESOLVE_S + 1)  # nginx has resolved the new replica
                self.say(f"{new.name}: healthy")
                rolled.append(new.name)
            if index < len(old):
                how = "in-flight requests finish" if service == "prefect-api" else "cleanly"
                self.say(f"{old[index].name}: stopping ({how}), then removed")
                self.remove(old[index])
        return rolled


def rollout(s: StackSettings, say: Callable[[str], None]) -> list[str]:
    """Replace every API replica, then every background-services container."""
    roller = ComposeRollout(s, say)
    if not roller.containers("nginx"):
        raise RolloutError(["rollout needs the load balancer (nginx) running"])
    rolled = [name for service in roller.replicas for name in roller.roll(service)]
    # The exporter (and doctor, which runs in it) follows the new image too; it
    # serves no user request, so it is simply recreated.
    roller._compose("up", "-d", "--no-deps", "prefect-exporter")
    say("prefect-exporter: recreated with the current configuration")
    return rolled
