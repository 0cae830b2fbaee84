"""`prefectstack rollout` of the running native stack under load: every replica
and services process restarted, one at a time, and nothing a user does is lost."""

from __future__ import annotations

from pathlib import Path

import httpx

from conftest import port_taken
from rollout_workload import POOL_KEY, rollout_under_load, set_env_value


def process_env(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_rollout_under_load_loses_nothing(stack):
    """A changed setting: `up` says a rollout applies it; the rollout, under load
    with an events subscriber, applies it to every replica and loses nothing."""
    old_pool = set_env_value(stack, POOL_KEY, "6")
    try:
        up = stack.cli("up")
        assert "prefectstack rollout" in up.stdout and "api-1" in up.stdout, up.stdout
        rolled = rollout_under_load(stack)
        assert rolled == ["api-1", "api-2", "api-3", "services-1", "services-2"], rolled
        for i in (1, 2, 3):
            pid = stack.status()[f"api-{i}"]["pid"]
            assert process_env(pid)[POOL_KEY] == "6", f"api-{i} runs the old setting"
    finally:
        set_env_value(stack, POOL_KEY, old_pool)  # the next rollout puts it back


def test_rollout_stops_at_a_replica_that_cannot_start(stack):
    """api-2 stopped and its port taken: the rollout rolls api-1, fails at api-2
    with the reason, leaves it out of nginx and api-3 serving; fixed, it completes."""
    port = stack.api_ports[1]
    stack.cli("stop", "api-2")
    with port_taken(port):
        result = stack.cli("rollout", check=False, timeout=600)
        assert result.returncode == 1, result.stdout
        assert "rollout stopped at api-2" in result.stderr, result.stderr
        assert f"Port {port} is already in use" in result.stderr, result.stderr
        assert "api-1: back in the load balancer" in result.stderr
        assert "api-3" not in result.stderr  # never touched
        status = stack.status()
        assert status["api-1"]["healthy"] and status["api-3"]["healthy"], status
        nginx_conf = (stack.state / "run" / "nginx.conf").read_text()
        assert f"127.0.0.1:{port} down" in nginx_conf
        assert httpx.get(f"{stack.lb}/api/health", timeout=10).status_code == 200
    result = stack.cli("rollout", timeout=600)
    assert "api-2" in result.stdout
    assert " down" not in (stack.state / "run" / "nginx.conf").read_text()
    status = stack.status()
    assert all(status[f"api-{i}"]["healthy"] for i in (1, 2, 3)), status
