"""When scheduled backups run. BACKUP_SCHEDULE takes the forms both native mode
and the compose pgbackups image (go-cron) read the same way: @hourly, @daily
(@midnight), @weekly, @monthly, @yearly, or @every <duration> (e.g. 6h, 90m)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
EVERY_RE = re.compile(r"^@every ((?:\d+h)?(?:\d+m)?(?:\d+s)?)$")


def parse_every(spec: str) -> timedelta | None:
    match = EVERY_RE.match(spec)
    if not match or not match.group(1):
        return None
    parts = {unit: number for number, unit in re.findall(r"(\d+)([hms])", match.group(1))}
    delta = timedelta(
        hours=int(parts.get("h", 0)), minutes=int(parts.get("m", 0)), seconds=int(parts.get("s", 0))
    )
    return delta if delta.total_seconds() >= 60 else None


def interval(spec: str) -> timedelta:
    """The longest time between two runs of a valid SPEC."""
    every = parse_every(spec)
    if every is not None:
        return every
    days = {"@hourly": 1 / 24, "@daily": 1, "@midnight": 1, "@weekly": 7, "@monthly": 31}
    return timedelta(days=days.get(spec, 366))


def valid(spec: str) -> bool:
    return spec in DESCRIPTORS or parse_every(spec) is not None


def next_run(spec: str, after: datetime) -> datetime:
    """The first run time strictly after `after` (UTC wall clock, as in the image)."""
    every = parse_every(spec)
    if every is not None:
        return after + every
    top = after.replace(minute=0, second=0, microsecond=0)
    if spec == "@hourly":
        return top + timedelta(hours=1)
    midnight = top.replace(hour=0)
    if spec in ("@daily", "@midnight"):
        return midnight + timedelta(days=1)
    if spec == "@weekly":  # Sunday 00:00, as cron's 0 0 * * 0
        return midnight + timedelta(days=(6 - midnight.weekday()) % 7 or 7)
    first = midnight.replace(day=1)
    if spec == "@monthly":
        return (first + timedelta(days=32)).replace(day=1)
    return first.replace(year=first.year + 1, month=1)


def run_forever(spec: str, take: Callable[[], list[Path]]) -> None:
    """Call `take` at every time `spec` names, printing what it wrote or why it failed."""
    from .operations import BackupError

    while True:
        due = next_run(spec, datetime.now(UTC))
        print(f"next backup at {due.isoformat(timespec='seconds')}", flush=True)
        while (wait := (due - datetime.now(UTC)).total_seconds()) > 0:
            time.sleep(min(wait, 30))
        try:
            for path in take():
                print(f"scheduled backup written: {path}", flush=True)
        except BackupError as exc:
            print(f"scheduled backup FAILED: {exc}", flush=True)
