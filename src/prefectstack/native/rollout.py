"""`prefectstack rollout` in native mode: every API replica, then every
background-services process, restarted one at a time with the configuration the
.env and deploy/ give now, with no request failing on the way.

A replica is drained first: nginx gets a configuration with it marked `down`
and reloads (HUP: new workers take new requests; the old ones finish what they
hold), so no new request reaches it. Its stop is uvicorn's graceful shutdown
(SIGTERM): it stops accepting, finishes in-flight requests and closes its
websockets, whose clients reconnect through nginx to another replica (Prefect's
events client then re-sends what the server had not confirmed). It starts
again and is put back once /api/ready answers. A replica that does not become
healthy stops the rollout: it stays out of nginx, the others keep serving.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from .stack import NativeStack, StackError

RELOAD_TIMEOUT_S = 15.0


def _children(pid: int) -> dict[int, str]:
    """Child processes of PID with their command lines (from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
    return found


def reload_nginx(stack: NativeStack) -> None:
    """HUP nginx and wait until the configuration is in force: every worker that
    was running before is shutting down or gone, and a new one runs."""
    master = stack.sup.info("nginx").pid
    before = set(_children(master))
    stack.sup.signal("nginx", "HUP")
    deadline = time.monotonic() + RELOAD_TIMEOUT_S
    while time.monotonic() < deadline:
        now = _children(master)
        old_active = [p for p in before if p in now and "shutting down" not in now[p]]
        new = [p for p in now if p not in before and "worker process" in now[p]]
        if not old_active and new:
            return
        time.sleep(0.1)
    raise StackError([f"nginx did not reload within {RELOAD_TIMEOUT_S:.0f}s (see its log)"])


def rollout(stack: NativeStack, say: Callable[[str], None]) -> list[str]:
    """Roll every replica and services process; returns what was rolled."""
    if not stack.sup.running():
        raise StackError([f"the native stack in {stack.layout.root} is not running"])
    if stack.sup.info("nginx").state != "RUNNING":
        raise StackError(["rollout needs the load balancer (nginx) running"])
    stack.prepare_runtime()  # PREFECT_VERSION may name a release not installed yet
    stack.write_files()
    stack.sup.reload_config()  # the new environment of every process, new replicas
    reload_nginx(stack)
    # Every configured replica and services process: a stopped one is started,
    # one added to .env since `up` joins here.
    names = [svc.name for svc in stack.services]
    replicas = [n for n in names if n.startswith("api-")]
    services = [n for n in names if n.startswith("services-")]
    rolled = []
    for name in replicas:
        port = stack.service(name).port
        say(f"{name}: draining (nginx sends it no new request)")
        stack.write_nginx_conf(drained=frozenset({port}))
        reload_nginx(stack)
        say(f"{name}: stopping (in-flight requests finish)")
        stack.sup.stop(name)
        say(f"{name}: starting with the new configuration")
        try:
            stack.start_healthy([name])
        except StackError as exc:
            # Left out of nginx: the others keep serving.
            raise StackError(
                [f"rollout stopped at {name}; it stays out of the load balancer, "
                 "the other replicas keep serving", *exc.problems]
            ) from None  # fmt: skip
        stack.write_nginx_conf()
        reload_nginx(stack)
        say(f"{name}: back in the load balancer")
        rolled.append(name)
    for name in services:
        say(f"{name}: restarting (the other services processes carry on)")
        stack.sup.stop(name)
        try:
            stack.start_healthy([name])
        except StackError as exc:
            raise StackError([f"rollout stopped at {name}", *exc.problems]) from None
        say(f"{name}: healthy")
        rolled.append(name)
    return rolled
