"""`prefectstack rollout` (or `upgrade`) under a load of flow runs with an /api/events/out
subscriber, for the rollout tests of both modes: nothing a user does is lost."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta

from websockets.exceptions import ConnectionClosed

from prefectstack.client_config import client_values
from prefectstack.operations import drill
from prefectstack.settings import load_settings

from test_native_e2e import poll

POOL_KEY = "PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE"


class EventsSubscriber:
    """A /api/events/out subscriber through the LB that reconnects when its replica
    goes away (as Prefect's own client does), asking again from the same start."""

    def __init__(self, stack):
        self.stack = stack
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
                with self.stack.events_socket() as ws:
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


def set_env_value(stack, key: str, value: str) -> str:
    """Set KEY in the stack's .env; returns the old value."""
    lines = stack.env_file.read_text().splitlines()
    old = next(line.split("=", 1)[1] for line in lines if line.startswith(f"{key}="))
    lines = [f"{key}={value}" if line.startswith(f"{key}=") else line for line in lines]
    stack.env_file.write_text("\n".join(lines) + "\n")
    stack.env[key] = value
    return old


def rollout_under_load(stack, *command: str) -> list[str]:
    """`prefectstack COMMAND` (default: rollout) while 2 clients run flow runs and a
    subscriber listens: no client error, nothing lost or duplicated, every
    Completed event delivered. Returns what it says it rolled out."""
    command = command or ("rollout",)
    settings = load_settings(stack.env_file)
    api = drill.Api(client_values(settings, f"{settings.lb_url}/api"))
    subscriber = EventsSubscriber(stack)
    subscriber.thread.start()
    rolled: dict = {}

    def roll(outcome: drill.Outcome) -> None:
        started = time.monotonic()
        result = stack.cli(*command, check=False, timeout=1800)
        rolled["result"] = result
        names = re.search(r"rolled out: (.+)$", result.stdout.strip(), re.M)
        outcome.killed = names.group(1).split(", ") if names else []
        outcome.recovery_s = round(time.monotonic() - started, 1)

    workload = drill.Workload(clients=2, runs=500, duration_s=600, stop_after_disruption=True)
    try:
        outcome = drill.under_load(api, command[0], workload, roll, print)
        completed = {r["id"] for r in api.flow_runs(outcome.tag) if r["state_type"] == "COMPLETED"}
        seen = poll(lambda: set(subscriber.completed), lambda s: completed <= s, timeout=60)
    finally:
        subscriber.stop.set()
        subscriber.thread.join(10)
    result = rolled["result"]
    assert result.returncode == 0, result.stderr
    losses = {k: getattr(outcome, k) for k in drill.LOSSES if getattr(outcome, k)}
    assert not losses, (losses, outcome.notes)
    assert outcome.runs >= 20, outcome
    assert completed <= seen, (
        f"{len(completed - seen)} Completed events never reached the subscriber"
    )
    print(f"{command[0]} took {outcome.recovery_s}s; "
          f"subscriber reconnected {subscriber.reconnects}x")  # fmt: skip
    return outcome.killed
