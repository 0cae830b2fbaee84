"""Native mode operations: up, down, status, restart, kill."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..backups.pgbackrest import BackRestError
from ..health import Probe
from ..loadbalancer import tls
from ..loadbalancer.nginx_config import native_conf
from ..localports import bindable
from ..monitoring.config import native_alertmanager, native_prometheus
from ..releases import runtime
from ..settings import StackSettings
from . import archiving, postgres, topology
from .layout import Layout
from .supervisor import RESTART_LISTENER, ProcInfo, Supervisor, SupervisorError, write_config
from .tools import Tools, locate

Report = Callable[[str, str], None]  # (service, message)

# A service restarted this often within 10 minutes, and not up for a minute
# since, is crash-looping: reported as failing rather than as healthy.
CRASH_LOOP_RESTARTS = 5
STABLE_AFTER_S = 60


class StackError(Exception):
    """A failure to show the user: one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass
class ServiceStatus:
    name: str
    description: str
    state: str
    pid: int | None
    port: int | None
    health: str
    healthy: bool
    restarts: int
    uptime_s: float | None
    detail: str

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def _quiet(_service: str, _message: str) -> None:
    pass


class NativeStack:
    def __init__(self, settings: StackSettings, report: Report = _quiet):
        self.s = settings
        self.layout = Layout(settings.state_dir)
        self.sup = Supervisor(self.layout)
        self.report = report
        self._tools: Tools | None = None
        self._topology: tuple[list[topology.Service], list[topology.Skipped]] | None = None

    # --- topology --------------------------------------------------------------
    @property
    def tools(self) -> Tools:
        if self._tools is None:
            self._tools = locate()
        return self._tools

    def topology(self) -> tuple[list[topology.Service], list[topology.Skipped]]:
        """(services to run, optional ones skipped and why), built once."""
        if self._topology is None:
            self._topology = topology.build(self.s, self.layout, self.tools)
        return self._topology

    @property
    def services(self) -> list[topology.Service]:
        return self.topology()[0]

    def service(self, name: str) -> topology.Service:
        for svc in self.services:
            if svc.name == name:
                return svc
        known = ", ".join(svc.name for svc in self.services)
        raise StackError([f"unknown service '{name}'; services: {known}"])

    def stages(self) -> list[list[topology.Service]]:
        order = sorted({svc.stage for svc in self.services})
        return [[svc for svc in self.services if svc.stage == st] for st in order]

    # --- files -------------------------------------------------------------------
    def write_files(self) -> tuple[list[str], list[str]]:
        """Render every config into the state directory. Returns the services whose
        environment changed, and those whose config file changed (they reload on HUP)."""
        lay = self.layout
        lay.root.mkdir(parents=True, exist_ok=True)
        lay.root.chmod(0o755)  # service accounts must reach their own subdirectories
        for path, mode in (
            (lay.run, 0o700),
            (lay.env_dir, 0o700),
            (lay.logs, 0o755),
            (lay.redis, 0o700),
            (lay.prefect_home, 0o700),
            (lay.nginx, 0o755),
            (lay.nginx / "tmp", 0o755),
            (lay.root / "prometheus", 0o700),
            (lay.root / "alertmanager", 0o700),
        ):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(mode)
        changed = []
        for svc in self.services:
            if svc.env_file is None:
                continue
            text = json.dumps(svc.env, indent=1, sort_keys=True)
            if svc.env_file.exists() and svc.env_file.read_text() != text:
                changed.append(svc.name)
            _write_private(svc.env_file, text)
        _write_private(lay.redis_local_conf, self._redis_local_conf())
        try:
            archiving.prepare(lay, self.s)
        except postgres.PostgresError as exc:
            raise StackError([str(exc)]) from None
        reloadable = {
            "nginx": lay.nginx_conf,
            "prometheus": lay.prometheus_conf,
            "alertmanager": lay.alertmanager_conf,
        }
        before = {name: _read(path) for name, path in reloadable.items()}
        self.write_nginx_conf()
        _write_private(lay.prometheus_password, self.s.auth_string.partition(":")[2])
        lay.prometheus_conf.write_text(
            native_prometheus(
                self.s,
                rules_dir=self.tools.deploy / "prometheus" / "rules",
                password_file=lay.prometheus_password,
            )
        )
        _write_private(lay.alertmanager_conf, native_alertmanager(self.s))
        write_config(lay, self.s.project_name, self.services)
        rewritten = [name for name, path in reloadable.items() if _read(path) != before[name]]
        return changed, rewritten

    def write_nginx_conf(self, drained: frozenset[int] = frozenset()) -> None:
        """nginx.conf with every replica, those on a DRAINED port marked `down`
        (nginx sends them no new request; `rollout` drains a replica this way)."""
        lay = self.layout
        lay.nginx_conf.write_text(
            native_conf(
                listen=f"{self.s.bind_address}:{self.s.prefect_port}",
                api_addresses=[
                    f"{topology.LOOPBACK}:{p}" + (" down" if p in drained else "")
                    for p in self.s.api_ports
                ],
                status_listen=f"{topology.LOOPBACK}:{self.s.nginx_status_port}",
                run_dir=lay.run,
                nginx_dir=lay.nginx,
                log_exporter=f"{topology.LOOPBACK}:{self.s.nginx_log_exporter_port}",
                tls=self._tls_paths(),
            )
        )

    def _tls_paths(self) -> dict[str, str] | None:
        """The certificate nginx serves (a self-signed one is made or renewed here)."""
        if not self.s.tls:
            return None
        found = tls.ensure_self_signed(self.s) if self.s.tls_self_signed else tls.files(self.s)
        return {"cert": str(found.cert), "key": str(found.key)}

    def _redis_local_conf(self) -> str:
        s = self.s
        return "\n".join(
            [
                "# Native-mode additions to deploy/redis/redis.conf (written by prefectstack).",
                f"bind {topology.LOOPBACK}",
                "protected-mode yes",
                f"port {s.prefect_redis_messaging_port}",
                f"dir {self.layout.redis}",
                "daemonize no",
                'logfile ""',
                f"maxmemory {s.redis_maxmemory}",
                f"requirepass {s.redis_password.get_secret_value()}",
                "",
            ]
        )

    # --- preflight -----------------------------------------------------------------
    def preflight(self, running: dict[str, ProcInfo]) -> None:
        """Fail before anything starts when a port is taken or used twice."""
        problems = []
        seen: dict[int, str] = {}
        for name, key, port, udp in topology.listeners(self.s, self.services):
            label = f"{name} ({key}={port})" if key else f"{name} (port {port})"
            if port in seen:
                problems.append(f"port {port} is configured for both {seen[port]} and {label}")
                continue
            seen[port] = label
            info = running.get(name)
            if info is not None and info.state in ("RUNNING", "STARTING", "BACKOFF"):
                continue
            host = self.s.bind_address if key in topology.PUBLIC_PORT_KEYS else topology.LOOPBACK
            for proto in ("tcp", "udp") if udp else ("tcp",):
                if not bindable(host, port, proto):
                    problems.append(
                        f"{label}: {proto.upper()} port {port} on {host} is already in use by "
                        f"another process; stop it (see `ss -lnp 'sport = :{port}'`) or set "
                        "another port in .env"
                    )
        if problems:
            raise StackError(problems)

    def prepare_runtime(self) -> None:
        """The environment of the Prefect release in .env, installed on first use."""
        try:
            runtime.ensure(self.s.prefect_version, lambda line: self.report("prefect", line))
        except runtime.RuntimeEnvError as exc:
            raise StackError([str(exc)]) from None

    # --- up ----------------------------------------------------------------------------
    def up(self) -> list[str]:
        """Start everything not yet running, stage by stage behind health gates.
        Returns notices for the user."""
        notices: list[str] = []
        for item in self.topology()[1]:
            self.report(item.name, f"skipped: {item.reason}")
        running = self.sup.all_info() if self.sup.running() else {}
        self.preflight(running)
        self.prepare_runtime()
        changed, rewritten = self.write_files()
        if running:
            self.sup.reload_config()
            for name in rewritten:
                if name in running and running[name].state == "RUNNING":
                    self.sup.signal(name, "HUP")  # nginx and Prometheus reload on HUP
                    self.report(name, "reloaded its configuration")
            changed = [n for n in changed if n in running and running[n].state == "RUNNING"]
            rolling = [n for n in changed if n.startswith(("api-", "services-"))]
            others = [n for n in changed if n not in rolling]
            if rolling:
                notices.append(
                    f"configuration changed for {', '.join(rolling)}; apply it with "
                    "`prefectstack rollout` (one at a time, no request fails)"
                )
            if others:
                notices.append(
                    "configuration changed for running services "
                    f"{', '.join(others)}; apply it with `prefectstack restart SERVICE`"
                )
        else:
            try:
                created = postgres.initdb(self.tools.pg_bindir, self.layout, self.s)
            except postgres.PostgresError as exc:
                raise StackError([str(exc)]) from None
            if created:
                self.report("postgres", "created a new cluster")
            self.layout.restarts.unlink(missing_ok=True)  # counts are per supervisor run
            self.sup.start_daemon(topology.base_env(self.layout))
        for stage in self.stages():
            self._start_stage(stage)
            if any(svc.name == "postgres" for svc in stage):
                try:
                    created = postgres.bootstrap(self.tools.pg_bindir, self.layout, self.s)
                except postgres.PostgresError as exc:
                    raise StackError([f"postgres: {exc}"]) from None
                if created:
                    self.report("postgres", f"created database {self.s.postgres_db} with pg_trgm")
                try:  # before WAL piles up waiting to be archived; a no-op once it exists
                    archiving.client(self.layout, self.s).stanza_create()
                except BackRestError as exc:
                    raise StackError([f"pgbackrest: {exc}"]) from None
        return notices

    def start_healthy(self, names: list[str]) -> None:
        """Start services (if not running) and wait at their health gates."""
        self._start_stage([self.service(name) for name in names])

    def _start_stage(self, stage: list[topology.Service]) -> None:
        pending = {}
        for svc in stage:
            info = self.sup.info(svc.name)
            if svc.oneshot or info.state not in ("RUNNING", "STARTING", "BACKOFF"):
                if svc.prepare:
                    try:
                        svc.prepare()
                    except Exception as exc:
                        raise StackError([f"{svc.name}: preparing to start failed: {exc}"]) from exc
                self.sup.start(svc.name)
                self.report(svc.name, "starting")
            pending[svc.name] = (svc, time.monotonic())
        failures = []
        while pending:
            for name, (svc, started) in list(pending.items()):
                done, problem = self._gate(svc, started)
                if problem:
                    failures.append(problem)
                    del pending[name]
                elif done:
                    self.report(name, f"{done} ({time.monotonic() - started:.1f}s)")
                    del pending[name]
            if pending:
                time.sleep(0.3)
        if failures:
            raise StackError(failures)

    def _gate(self, svc: topology.Service, started: float) -> tuple[str | None, str | None]:
        """(done message, problem) for one service waiting at its health gate."""
        info = self.sup.info(svc.name)
        elapsed = time.monotonic() - started
        if svc.oneshot:
            if info.state == "EXITED" and info.exitstatus == 0:
                return "completed", None
            if info.state in ("EXITED", "FATAL", "BACKOFF"):
                return None, self._failure(svc, f"exited with status {info.exitstatus}")
        elif info.state == "FATAL":
            return None, self._failure(svc, "kept exiting during start-up; supervisor gave up")
        elif info.state == "RUNNING":
            probe = svc.probe() if svc.probe else Probe(True)
            if probe:
                return "healthy", None
            svc_detail = probe.detail
            if elapsed > svc.start_timeout:
                return None, self._failure(
                    svc, f"not healthy after {svc.start_timeout:.0f}s: {svc_detail}"
                )
            return None, None
        if elapsed > svc.start_timeout:
            return None, self._failure(svc, f"still {info.state} after {svc.start_timeout:.0f}s")
        return None, None

    def _failure(self, svc: topology.Service, reason: str) -> str:
        tail = _tail(self.layout.log_of(svc.name), 12)
        text = f"{svc.name} ({svc.description}) failed: {reason}"
        if tail:
            text += (
                f"\n    last lines of {self.layout.log_of(svc.name)}:\n      "
                + "\n      ".join(tail)
            )
        return text

    # --- down ------------------------------------------------------------------------
    def down(self) -> None:
        """Stop stage by stage in reverse order, then supervisord itself."""
        if not self.sup.running():
            if self.sup.pid() is not None:
                self.sup.shutdown()
            return
        infos = self.sup.all_info()
        for stage in reversed(self.stages()):
            names = [svc.name for svc in stage if svc.name in infos]
            for name in names:
                self.report(name, "stopping")
            self.stop_many(names)
        # Stopped by supervisord's shutdown, the listener would come last, after
        # one main-loop pass (up to 1 s) per program group: about 20 s.
        self.sup.stop(RESTART_LISTENER)
        self.sup.shutdown()

    def stop_many(self, names: list[str]) -> None:
        # supervisord stops one at a time per call; stopping a stage's members from
        # threads keeps a stage's shutdown as long as its slowest member.
        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            list(pool.map(self.sup.stop, names))

    # --- one service -------------------------------------------------------------------
    def restart(self, name: str) -> None:
        svc = self.service(name)
        self._require_running()
        self.write_files()
        self.sup.reload_config()
        self.sup.stop(name)
        self.report(name, "stopped")
        self._start_stage([svc])

    def stop(self, name: str) -> None:
        self.service(name)
        self._require_running()
        self.sup.stop(name)

    def kill(self, name: str) -> int:
        self.service(name)
        self._require_running()
        return self.sup.kill(name)

    def _require_running(self) -> None:
        if not self.sup.running():
            raise StackError([f"the native stack in {self.layout.root} is not running"])

    # --- status ------------------------------------------------------------------------
    def restarts(self) -> dict:
        try:
            return json.loads(self.layout.restarts.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def status(self) -> list[ServiceStatus]:
        infos = self.sup.all_info() if self.sup.running() else {}
        restarts = self.restarts()
        rows = []
        now = time.time()
        for svc in self.services:
            info = infos.get(svc.name)
            state = info.state if info else "DOWN"
            counted = restarts.get(svc.name, {})
            recent = [t for t in counted.get("recent", []) if now - t < 600]
            detail = ""
            if state == "RUNNING" and svc.probe:
                probe = svc.probe()
                health, healthy, detail = (
                    ("healthy" if probe else "unhealthy"),
                    probe.ok,
                    probe.detail,
                )
            elif state == "RUNNING":
                health, healthy = "running", True
            elif svc.oneshot and state == "EXITED" and info and info.exitstatus == 0:
                health, healthy = "completed", True
            else:
                health, healthy = state.lower(), False
                detail = info.description if info else ""
            uptime = (now - info.start) if info and state == "RUNNING" else None
            flapping = len(recent) >= CRASH_LOOP_RESTARTS and (uptime or 0) < STABLE_AFTER_S
            if flapping or counted.get("failed"):
                health, healthy = "failing", False
                detail = f"{len(recent)} restarts in 10 min; {counted.get('last_reason', '')}"
            rows.append(
                ServiceStatus(
                    name=svc.name,
                    description=svc.description,
                    state=state,
                    pid=info.pid if info and info.pid else None,
                    port=svc.port,
                    health=health,
                    healthy=healthy,
                    restarts=counted.get("restarts", 0),
                    uptime_s=uptime,
                    detail=detail,
                )
            )
        return rows

    def log_files(self, name: str | None) -> list[Path]:
        names = [name] if name else [svc.name for svc in self.services]
        if name:
            self.service(name)
        return [self.layout.log_of(n) for n in names if self.layout.log_of(n).exists()]


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    path.chmod(0o600)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _tail(path: Path, lines: int) -> list[str]:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


__all__ = ["NativeStack", "ServiceStatus", "StackError", "SupervisorError"]
