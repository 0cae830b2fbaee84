"""Locating the programs native mode runs, with the fix when one is missing."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..paths import REPO_ROOT, deploy_dir
from . import postgres

# Daemons live in sbin, which a normal user's PATH often lacks.
SBIN = "/usr/local/sbin:/usr/sbin:/sbin"
INSTALL_HINT = "run scripts/install_native.sh (or: apt-get install {pkg})"
# Optional web UIs installed by scripts/install_native.sh next to the checkout.
TOOLS_DIR = Path(os.environ.get("PREFECTSTACK_TOOLS_DIR", REPO_ROOT / ".tools"))


class MissingTools(Exception):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Tools:
    deploy: Path
    pg_bindir: Path
    redis_server: str
    nginx: str
    pgadmin_python: Path | None
    redis_commander: Path | None
    node: str | None

    @staticmethod
    def which(name: str) -> str | None:
        return which(name)


def which(name: str) -> str | None:
    return shutil.which(name, path=f"{os.environ.get('PATH', os.defpath)}:{SBIN}")


def locate() -> Tools:
    problems = []
    bindir = postgres.find_bindir()
    if bindir is None:
        problems.append(f"PostgreSQL server not found: {INSTALL_HINT.format(pkg='postgresql')}")
    else:
        major, minor = postgres.version(bindir)
        if (major, minor) < postgres.MIN_VERSION:
            problems.append(
                f"PostgreSQL {major}.{minor} in {bindir} is older than 14.9, which Prefect "
                "needs for several API replicas"
            )
    found = {}
    required = (("redis-server", "redis-server"), ("nginx", "nginx"),
                ("pgbackrest", "pgbackrest"), ("jq", "jq"))  # fmt: skip
    for binary, pkg in required:
        found[binary] = which(binary)
        if found[binary] is None:
            problems.append(f"{binary} not found: {INSTALL_HINT.format(pkg=pkg)}")
    if os.geteuid() == 0 and which("runuser") is None:
        problems.append(
            "runuser not found (needed to run PostgreSQL as 'postgres'): apt-get install util-linux"
        )
    if problems:
        raise MissingTools(problems)
    pgadmin = TOOLS_DIR / "pgadmin" / "bin" / "python"
    commander = (
        TOOLS_DIR / "redis-ui" / "node_modules" / "redis-commander" / "bin" / "redis-commander.js"
    )
    return Tools(
        deploy=deploy_dir(),
        pg_bindir=bindir,
        redis_server=found["redis-server"],
        nginx=found["nginx"],
        pgadmin_python=pgadmin if pgadmin.exists() else None,
        redis_commander=commander if commander.exists() else None,
        node=which("node"),
    )
