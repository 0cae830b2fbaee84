"""supervisord as the native process supervisor: its config, its daemon, its API.

supervisord (the standard Python process-control system) does the restarting,
backoff, log capture and rotation, and process-group signalling; this module
renders its configuration and talks to it over its XML-RPC unix socket.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path

from supervisor.xmlrpc import SupervisorTransport

from ..render import render
from .layout import Layout


class SupervisorError(Exception):
    pass


# The event listener counting restarts (native/restart_listener.py).
RESTART_LISTENER = "restart-counter"


@dataclass(frozen=True)
class ProcInfo:
    name: str
    state: str  # STOPPED STARTING RUNNING BACKOFF STOPPING EXITED FATAL UNKNOWN
    pid: int
    exitstatus: int
    description: str
    start: int
    stop: int


def write_config(
    layout: Layout, project: str, services: list, *, python: str = sys.executable
) -> Path:
    text = render(
        "native/supervisord.conf.j2",
        layout=layout,
        project=project,
        services=services,
        python=python,
        restart_listener=RESTART_LISTENER,
        as_root=os.geteuid() == 0,
    )
    layout.run.mkdir(parents=True, exist_ok=True)
    layout.supervisor_conf.write_text(text)
    layout.supervisor_conf.chmod(0o600)
    return layout.supervisor_conf


class Supervisor:
    def __init__(self, layout: Layout):
        self.layout = layout

    # --- daemon ---------------------------------------------------------------
    def pid(self) -> int | None:
        try:
            pid = int(self.layout.supervisor_pid.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def running(self) -> bool:
        if self.pid() is None:
            return False
        try:
            return self._rpc().supervisor.getState()["statename"] == "RUNNING"
        except (OSError, xmlrpc.client.Fault):
            return False

    def start_daemon(self, env: dict[str, str], timeout: float = 20.0) -> None:
        """Start supervisord (it daemonizes) with a clean environment."""
        cmd = [
            sys.executable,
            "-m",
            "supervisor.supervisord",
            "-c",
            str(self.layout.supervisor_conf),
        ]
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SupervisorError(
                f"supervisord did not start: {result.stderr.strip() or result.stdout.strip()}"
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.running():
                return
            time.sleep(0.1)
        raise SupervisorError(
            f"supervisord did not answer on {self.layout.supervisor_sock} within {timeout:.0f}s; "
            f"see {self.layout.supervisor_log}"
        )

    def reload_config(self) -> None:
        """Apply a re-rendered config: add new programs, drop removed ones."""
        rpc = self._rpc()
        added, changed, removed = rpc.supervisor.reloadConfig()[0]
        for name in removed + changed:
            with contextlib.suppress(xmlrpc.client.Fault):
                rpc.supervisor.stopProcessGroup(name, True)
            rpc.supervisor.removeProcessGroup(name)
        for name in added + changed:
            rpc.supervisor.addProcessGroup(name)

    def shutdown(self, timeout: float = 30.0) -> None:
        pid = self.pid()
        if pid is None:
            return
        try:
            self._rpc().supervisor.shutdown()
        except (OSError, xmlrpc.client.Fault):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        raise SupervisorError(f"supervisord (pid {pid}) did not exit within {timeout:.0f}s")

    # --- programs ---------------------------------------------------------------
    def _rpc(self):
        transport = SupervisorTransport(None, None, f"unix://{self.layout.supervisor_sock}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def info(self, name: str) -> ProcInfo:
        try:
            raw = self._rpc().supervisor.getProcessInfo(name)
        except xmlrpc.client.Fault as exc:
            raise SupervisorError(f"{name}: {exc.faultString}") from None
        return _proc(raw)

    def all_info(self) -> dict[str, ProcInfo]:
        return {raw["name"]: _proc(raw) for raw in self._rpc().supervisor.getAllProcessInfo()}

    def start(self, name: str) -> None:
        try:
            self._rpc().supervisor.startProcess(name, False)
        except xmlrpc.client.Fault as exc:
            if "ALREADY_STARTED" not in exc.faultString:
                raise SupervisorError(f"{name}: {exc.faultString}") from None

    def stop(self, name: str) -> None:
        try:
            self._rpc().supervisor.stopProcess(name, True)
        except xmlrpc.client.Fault as exc:
            if "NOT_RUNNING" not in exc.faultString:
                raise SupervisorError(f"{name}: {exc.faultString}") from None

    def signal(self, name: str, sig: str) -> None:
        try:
            self._rpc().supervisor.signalProcess(name, sig)
        except xmlrpc.client.Fault as exc:
            raise SupervisorError(f"{name}: {exc.faultString}") from None

    def kill(self, name: str) -> int:
        """SIGKILL the whole process group of `name`, as a crash would; the
        supervisor sees an unexpected exit and restarts it."""
        info = self.info(name)
        if info.state != "RUNNING" or not info.pid:
            raise SupervisorError(f"{name} is not running (state {info.state})")
        os.killpg(os.getpgid(info.pid), signal.SIGKILL)
        return info.pid


def _proc(raw: dict) -> ProcInfo:
    return ProcInfo(
        name=raw["name"],
        state=raw["statename"],
        pid=raw["pid"],
        exitstatus=raw["exitstatus"],
        description=raw["description"],
        start=raw["start"],
        stop=raw["stop"],
    )


def command_line(argv: list[str]) -> str:
    """Quote a command for supervisord, which also %-expands it."""
    return shlex.join(argv).replace("%", "%%")
