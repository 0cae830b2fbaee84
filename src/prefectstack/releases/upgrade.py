"""`prefectstack upgrade`: from the Prefect release in .env (PREFECT_VERSION) to
the next, while the stack serves.

1. check: the target is a verified release, newer than the running one, and
   the configuration with it passes `check`;
2. prepare: the release's environment (native) or image (compose);
3. schema: the pending migrations, read in the new release; one the running
   code may not survive stops the upgrade here (`--with-downtime` instead);
4. backup: a pg_dump, the way back;
5. migrate: with the new release, while the old replicas serve;
6. switch: PREFECT_VERSION in .env;
7. rollout: replica by replica, then the services processes.
A failure after the migration leaves the old release serving on the new
schema, which step 3 showed it can; the message says how to go back.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..settings import StackSettings, load_settings
from .versions import VERIFIED_PREFECT, key


class UpgradeError(Exception):
    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


Say = Callable[[str], None]


@dataclass
class Plan:
    current: str
    target: str
    with_downtime: bool = False


def validate(s: StackSettings, target: str) -> Plan:
    current = s.prefect_version
    if target not in VERIFIED_PREFECT:
        raise UpgradeError(
            [f"Prefect {target} is not a release prefectstack was verified on "
             f"({', '.join(VERIFIED_PREFECT)}): its Prefect plugin would refuse to start"]
        )  # fmt: skip
    if target == current:
        raise UpgradeError([f"the stack already runs Prefect {current} (PREFECT_VERSION in .env)"])
    if key(target) < key(current):
        raise UpgradeError(
            [f"Prefect {target} is older than the running {current}: Prefect's migrations only "
             "go forward; restore the backup the upgrade to it took instead"]
        )  # fmt: skip
    return Plan(current, target)


def set_env_key(path: Path, name: str, value: str) -> None:
    """Set NAME=VALUE in the .env at PATH, keeping every other line and its mode."""
    lines = path.read_text().splitlines()
    found = False
    for i, line in enumerate(lines):
        if line.split("=", 1)[0].strip() == name and not line.lstrip().startswith("#"):
            lines[i], found = f"{name}={value}", True
    if not found:
        lines.append(f"{name}={value}")
    mode = path.stat().st_mode & 0o777
    tmp = path.with_name(f".{path.name}.upgrade")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.chmod(mode)
    os.replace(tmp, path)


class Target:
    """What the upgrade needs of a deployment mode."""

    def prepare(self, version: str, say: Say) -> None: ...
    def pending(self, version: str) -> dict: ...
    def backup(self) -> Path: ...
    def migrate(self, version: str) -> None: ...
    def stop_writers(self) -> None: ...
    def rollout(self, s: StackSettings, say: Say) -> list[str]: ...
    def start_writers(self, s: StackSettings) -> None: ...


def _run(argv: list[str], env: dict[str, str] | None, what: str, timeout: float = 900) -> str:
    result = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        tail = (result.stderr.strip() or result.stdout.strip())[-2000:]
        raise UpgradeError([f"{what} failed (exit {result.returncode}):\n{tail}"])
    return result.stdout


def _schema_problems(report: dict, current: str, target: str) -> list[str]:
    breaking = [m for m in report["pending"] if m["breaking"]]
    if not breaking:
        return []
    return [
        f"Prefect {target} migrates the schema in a way Prefect {current} may not survive, so "
        "it cannot be rolled out while the old replicas serve:",
        *(f"  {m['file']}: {', '.join(sorted(set(m['breaking'])))}" for m in breaking),
        "upgrade with `prefectstack upgrade --with-downtime` (the API stops for the migration)",
    ]


def upgrade(s: StackSettings, plan: Plan, target: Target, say: Say) -> list[str]:
    """Run the upgrade; returns what the rollout rolled (empty with downtime)."""
    from ..checks import check_settings

    new = s.model_copy(update={"prefect_version": plan.target})
    errors = [str(f) for f in check_settings(new, stack_running=True) if f.level == "error"]
    if errors:
        raise UpgradeError(["the configuration does not pass `check`:", *errors])
    say(f"preparing Prefect {plan.target}")
    target.prepare(plan.target, say)
    report = target.pending(plan.target)
    pending = report["pending"]
    say(
        f"schema: {len(pending)} migration(s) from {report['current']} to {report['head']}"
        + "".join(f"\n  {m['file']}" for m in pending)
    )
    problems = _schema_problems(report, plan.current, plan.target)
    if problems and not plan.with_downtime:
        raise UpgradeError(problems)
    path = target.backup()
    say(f"backup written: {path}")
    back = (
        f"to go back: PREFECT_VERSION={plan.current} in .env, then `prefectstack rollout`; "
        f"to undo the data changes as well: `prefectstack restore {path} --yes`"
    )
    if plan.with_downtime:
        say("stopping the API replicas and background services for the migration")
        target.stop_writers()
    try:
        say(f"migrating the database with Prefect {plan.target}")
        target.migrate(plan.target)
        set_env_key(s.env_path, "PREFECT_VERSION", plan.target)
        say(f"PREFECT_VERSION={plan.target} in {s.env_path}")
        switched = load_settings(s.env_path)
        if plan.with_downtime:
            target.start_writers(switched)
            return []
        return target.rollout(switched, say)
    except Exception as exc:
        problems = getattr(exc, "problems", None) or [str(exc)]
        serving = (
            "nothing serves until it is fixed"
            if plan.with_downtime
            else (f"Prefect {plan.current} keeps serving where it was not rolled yet")
        )
        raise UpgradeError([*problems, f"the upgrade stopped; {serving}", back]) from None


class NativeTarget(Target):
    def __init__(self, stack):
        self.stack = stack

    def _env(self, version: str) -> dict[str, str]:
        from . import runtime

        env = dict(self.stack.service("migrate").env or {})
        env["PATH"] = f"{runtime.bin_dir(version)}:{env.get('PATH', '')}"
        return env

    def prepare(self, version: str, say: Say) -> None:
        from . import runtime

        try:
            runtime.ensure(version, say)
        except runtime.RuntimeEnvError as exc:
            raise UpgradeError([str(exc)]) from None

    def pending(self, version: str) -> dict:
        from . import runtime

        python = str(runtime.bin_dir(version) / "python")
        out = _run([python, "-m", "prefectstack.releases.migrations"], self._env(version),
                   "reading the pending migrations")  # fmt: skip
        return json.loads(out)

    def backup(self) -> Path:
        from ..backups.layout import Retention
        from ..backups.operations import backup_now
        from ..backups.pg import NativePg

        s = self.stack.s
        password = s.postgres_password.get_secret_value()
        pg = NativePg(self.stack.tools.pg_bindir, host="127.0.0.1", port=s.postgres_port,
                      user=s.postgres_user, password=password)  # fmt: skip
        retention = Retention(s.backup_keep_days, s.backup_keep_weeks, s.backup_keep_months)
        return backup_now(pg, s.backup_dir, s.postgres_db, retention)

    def migrate(self, version: str) -> None:
        _run(["prefect", "server", "database", "upgrade", "-y"], self._env(version),
             f"the migration with Prefect {version}")  # fmt: skip

    def stop_writers(self) -> None:
        self.stack.stop_many([svc.name for svc in self.stack.services
                              if svc.name.startswith(("api-", "services-"))])  # fmt: skip

    def start_writers(self, s: StackSettings) -> None:
        from ..native.stack import NativeStack

        NativeStack(s, self.stack.report).up()

    def rollout(self, s: StackSettings, say: Say) -> list[str]:
        from ..native.rollout import rollout
        from ..native.stack import NativeStack

        return rollout(NativeStack(s, self.stack.report), say)


class ComposeTarget(Target):
    def __init__(self, s: StackSettings):
        from ..compose.operations import base

        self.s = s
        self.compose = base(s)

    def _env(self, version: str) -> dict[str, str]:
        # Compose takes a variable from its environment over the .env file.
        return {**os.environ, "PREFECT_VERSION": version}

    def prepare(self, version: str, say: Say) -> None:
        from ..compose import images

        if images.LOCAL_COMPOSE_FILE in self.s.compose_files:
            try:
                images.build_prefect(version, say)
            except images.ImageError as exc:
                raise UpgradeError([str(exc)]) from None
        else:
            _run([*self.compose, "build", "prefect-migrate"], self._env(version),
                 f"building the Prefect {version} image", timeout=3600)  # fmt: skip

    def pending(self, version: str) -> dict:
        out = _run(
            [*self.compose, "run", "--rm", "--no-deps", "-T", "prefect-migrate",
             "python", "-m", "prefectstack.releases.migrations"],
            self._env(version), "reading the pending migrations",
        )  # fmt: skip
        return json.loads(out.strip().splitlines()[-1])

    def backup(self) -> Path:
        from ..compose.operations import backup_now

        return backup_now(self.s)

    def migrate(self, version: str) -> None:
        _run([*self.compose, "run", "--rm", "--no-deps", "-T", "prefect-migrate"],
             self._env(version), f"the migration with Prefect {version}")  # fmt: skip

    def stop_writers(self) -> None:
        from ..compose.operations import WRITERS

        _run([*self.compose, "stop", *WRITERS], None, "stopping the writers")

    def start_writers(self, s: StackSettings) -> None:
        from ..compose.operations import WRITERS, base

        _run([*base(s), "up", "-d", "--wait", *WRITERS, "prefect-exporter"], None,
             "starting the writers")  # fmt: skip

    def rollout(self, s: StackSettings, say: Say) -> list[str]:
        from ..compose.rollout import rollout

        return rollout(s, say)
