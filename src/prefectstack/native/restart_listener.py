"""supervisord event listener that counts and logs unplanned restarts.

supervisord restarts a dead process but keeps no count; this listener records,
per program, how often it died or failed to start, the last reason, and whether
it gave up (FATAL), in a JSON file that `prefectstack status` reads.

Run by supervisord as `python -m prefectstack.native.restart_listener FILE`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from supervisor import childutils

# Unplanned transitions: an exit nobody asked for, a start that failed, giving up.
COUNTED = {"PROCESS_STATE_EXITED", "PROCESS_STATE_BACKOFF"}
FAILED = "PROCESS_STATE_FATAL"
STARTED = "PROCESS_STATE_RUNNING"


def load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def save(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def record(data: dict, event: str, payload: dict[str, str], now: float) -> str | None:
    """Update `data` for one event; return a log line when something happened.
    A recovery (RUNNING after FATAL) updates `data` and returns "".
    """
    name = payload.get("processname", "?")
    entry = data.setdefault(name, {"restarts": 0, "recent": [], "failed": False})
    if event == "PROCESS_STATE_EXITED" and payload.get("expected") == "1":
        return None
    if event in COUNTED:
        entry["restarts"] += 1
        entry["recent"] = [t for t in entry["recent"] if now - t < 600] + [now]
        reason = (
            f"exited unexpectedly (pid {payload.get('pid')})"
            if event == "PROCESS_STATE_EXITED"
            else "failed to start, retrying with backoff"
        )
        entry["last_reason"] = reason
        entry["last_at"] = now
        return f"{name}: {reason}; restart #{entry['restarts']}"
    if event == FAILED:
        entry["failed"] = True
        entry["last_at"] = now
        return f"{name}: kept failing to start; supervisor gave up (FATAL)"
    if event == STARTED and entry.get("failed"):
        entry["failed"] = False
        return ""
    return None


def main() -> None:
    path = Path(sys.argv[1])
    while True:
        headers, body = childutils.listener.wait(sys.stdin, sys.stdout)
        event = headers["eventname"]
        payload = dict(token.split(":", 1) for token in body.split())
        data = load(path)
        line = record(data, event, payload, time.time())
        if line is not None:
            save(path, data)
        if line:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            print(f"{stamp} {line}", file=sys.stderr, flush=True)
        childutils.listener.ok(sys.stdout)


if __name__ == "__main__":
    main()
