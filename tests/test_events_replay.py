"""/api/events/out across a reconnect, on the native stack: an event the replicas
received while no services process could store it still reaches a subscriber
that connects afterwards (prefect_plugin/events_replay.py). Without the replay it
is neither in the database (the backfill) nor in the live feed."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta


def _receive(stack, name: str, since: datetime, seconds: float) -> list[str]:
    """The ids of the events named NAME a new subscriber receives within SECONDS,
    and within 3 more seconds after the first (a duplicate would come then)."""
    ids = []
    with stack.events_socket() as ws:
        ws.send(json.dumps({"type": "filter", "filter": {
            "occurred": {"since": since.isoformat(),
                         "until": (since + timedelta(hours=1)).isoformat()},
            "event": {"name": [name]},
        }}))  # fmt: skip
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                message = json.loads(ws.recv(timeout=1))
            except TimeoutError:
                continue
            if message.get("type") == "event":
                if not ids:
                    deadline = min(deadline, time.monotonic() + 3)
                ids.append(message["event"]["id"])
    return ids


def test_a_new_subscriber_gets_an_event_received_but_not_yet_stored(stack):
    services = sorted(name for name in stack.status() if name.startswith("services-"))
    since = datetime.now(UTC) - timedelta(minutes=1)
    name = f"prefectstack.test.replay-{uuid.uuid4().hex[:8]}"
    event = {
        "id": str(uuid.uuid4()),
        "occurred": datetime.now(UTC).isoformat(),
        "event": name,
        "resource": {"prefect.resource.id": f"prefectstack.test.{uuid.uuid4().hex[:8]}"},
    }
    for service in services:  # the event persister runs in them
        stack.cli("stop", service)
    try:
        with stack.client() as client:
            assert client.post("/events", json=[event]).status_code == 204
            body = {"filter": {"event": {"name": [name]}}}
            assert client.post("/events/filter", json=body).json()["events"] == []
        assert _receive(stack, name, since, seconds=15) == [event["id"]]
    finally:
        for service in services:
            stack.cli("restart", service)
    # Stored once the persister runs again; a subscriber then gets it once.
    assert _receive(stack, name, since, seconds=30) == [event["id"]]
