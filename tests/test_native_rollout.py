"""`prefectstack rollout` of the running native stack under load: every replica
and services process restarted, one at a time, and nothing a user does is lost."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from prefectstack.client_config import client_values
from prefectstack.operations import drill
from prefectstack.settings import load_settings

from conftest import port_taken
from test_native_e2e import poll


class EventsSubscriber:
    """A /api/events/out subscriber through the LB that reconnects when its replica
    goes away (as Prefect's own client does), asking again from the same start."""

    def __init__(self, stack):
        self.url = stack.lb.replace("http://", "ws://") + "/api/events/out"
        self.token = stack.auth_string
        self.since = datetime.now(UTC)
        self.completed: set[str] = set()  # flow-run ids seen Completed
        self.reconnects = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _filter(self) -> str:
        return json.dumps({
            "type": "filter",
            "filter": {
                "occurred": {"since": self.since.isoformat(),
                             "until": (self.since + timedelta(days=1)).isoformat()},
                "event": {"name": ["prefect.flow-run.Completed"]},
            },
        })  # fmt: skip

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                with connect(self.url, subprotocols=["prefect"], open_timeout=10) as ws:
                    ws.send(json.dumps({"type": "auth", "token": self.token}))
                    assert json.loads(ws.recv(timeout=10))["type"] == "auth_success"
                    ws.send(self._filter())
                    while not self.stop.is_set():
                        try:
                            message = json.loads(ws.recv(timeout=1))
                        except TimeoutError:
                            continue
                        if message.get("type") == "event":
                            resource = message["event"]["resource"]["prefect.resource.id"]
                            self.completed.add(resource.removeprefix("prefect.flow-run."))
            except (ConnectionClosed, OSError, TimeoutError):
                self.reconnects += 1
                time.sleep(0.5)


POOL_KEY = "PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE"


def set_env_value(stack, key: str, value: str) -> str:
    """Set KEY in the stack's .env; returns the old value."""
    lines = stack.env_file.read_text().splitlines()
    old = next(line.split("=", 1)[1] for line in lines if line.startswith(f"{key}="))
    lines = [f"{key}={value}" if line.startswith(f"{key}=") else line for line in lines]
    stack.env_file.write_text("\n".join(lines) + "\n")
    return old


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
        _rollout_under_load(stack)
        for i in (1, 2, 3):
            pid = stack.status()[f"api-{i}"]["pid"]
            assert process_env(pid)[POOL_KEY] == "6", f"api-{i} runs the old setting"
    finally:
        set_env_value(stack, POOL_KEY, old_pool)  # the next rollout puts it back


def _rollout_under_load(stack) -> None:
    settings = load_settings(stack.env_file)
    api = drill.Api(client_values(settings, f"{settings.lb_url}/api"))
    subscriber = EventsSubscriber(stack)
    subscriber.thread.start()
    rolled: dict = {}

    def roll(outcome: drill.Outcome) -> None:
        started = time.monotonic()
        result = stack.cli("rollout", check=False, timeout=900)
        rolled["result"] = result
        outcome.killed = result.stdout.strip().removeprefix("rolled out: ").split(", ")
        outcome.recovery_s = round(time.monotonic() - started, 1)

    workload = drill.Workload(clients=2, runs=500, duration_s=150)
    try:
        outcome = drill.under_load(api, "rollout", workload, roll, print)
        completed = {r["id"] for r in api.flow_runs(outcome.tag) if r["state_type"] == "COMPLETED"}
        seen = poll(lambda: set(subscriber.completed), lambda s: completed <= s, timeout=60)
    finally:
        subscriber.stop.set()
        subscriber.thread.join(10)
    result = rolled["result"]
    assert result.returncode == 0, result.stderr
    assert outcome.killed == ["api-1", "api-2", "api-3", "services-1", "services-2"], result
    losses = {k: getattr(outcome, k) for k in drill.LOSSES if getattr(outcome, k)}
    assert not losses, (losses, outcome.notes)
    assert outcome.runs >= 20, outcome
    assert completed <= seen, (
        f"{len(completed - seen)} Completed events never reached the subscriber"
    )
    print(f"rollout took {outcome.recovery_s}s; subscriber reconnected {subscriber.reconnects}x")


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
