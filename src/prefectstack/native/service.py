"""One process of the native stack, as supervisord runs it and `up` gates it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import health
from .supervisor import command_line

# Start stage of the optional services that need the whole core stack first:
# web UIs, exporters, Prometheus, Alertmanager, scheduled backups.
ADDONS_STAGE = 6


@dataclass
class Service:
    name: str
    argv: list[str]
    stage: int
    description: str
    port: int | None = None
    port_key: str | None = None
    udp: bool = False  # also listens on UDP at `port`
    env: dict[str, str] | None = None
    env_file: Path | None = None
    probe: Callable[[], health.Probe] | None = None
    prepare: Callable[[], None] | None = None  # runs before each start
    oneshot: bool = False
    user: str | None = None
    startsecs: int = 2
    startretries: int = 5
    stop_signal: str = "TERM"
    stop_wait: int = 30
    start_timeout: float = 60.0

    @property
    def command_line(self) -> str:
        argv = self.argv
        if self.env_file is not None:
            argv = [sys.executable, "-m", "prefectstack.native.launch", str(self.env_file), *argv]
        return command_line(argv)


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str
