"""`prefectstack init`: a new .env from .env.example with strong random secrets."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import string
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from .settings import StackSettings

ALPHABET = string.ascii_letters + string.digits
SECRET_LENGTH = 32  # about 190 bits from [A-Za-z0-9]
AUTH_USER = "admin"
ROOT_STATE_DIR = Path("/var/lib/prefectstack")
# What PostgreSQL's account must reach, moved out of a checkout it cannot enter
# (e.g. one under /root): its data and the pgBackRest repository it archives to.
# The repository sits beside the state directory, not in it, so that removing a
# stack's state keeps its backups.
RELOCATED = {
    "STATE_DIR": lambda root: root,
    "PGBACKREST_REPO_PATH": lambda root: root.with_name(f"{root.name}-pgbackrest"),
}


class InitError(Exception):
    pass


@dataclass(frozen=True)
class InitResult:
    path: Path
    generated: list[str]
    backup: Path | None
    notes: list[str]


def secret_keys() -> list[str]:
    """Keys whose value is a required secret in the settings model."""
    return [
        name.upper()
        for name, field in StackSettings.model_fields.items()
        if field.annotation is SecretStr and field.is_required()
    ]


def new_secret() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(SECRET_LENGTH))


def secret_value(key: str) -> str:
    if key == "PREFECT_SERVER_API_AUTH_STRING":
        return f"{AUTH_USER}:{new_secret()}"
    return new_secret()


def postgres_can_reach(directory: Path) -> bool:
    """As root, PostgreSQL runs as 'postgres', which must reach the state dir."""
    if os.geteuid() != 0:
        return True
    probe = subprocess.run(
        ["runuser", "-u", "postgres", "--", "test", "-x", str(directory)],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def root_state_dir(target: Path) -> Path:
    """A state directory outside an unreachable checkout, one per checkout."""
    checkout = target.resolve().parent
    digest = hashlib.sha256(str(checkout).encode()).hexdigest()[:8]
    return ROOT_STATE_DIR / f"{checkout.name}-{digest}"


def create_env(example: Path, target: Path, *, force: bool = False) -> InitResult:
    if not example.is_file():
        raise InitError(f"{example} not found: run init from the prefectstack checkout")
    backup = None
    if target.exists():
        if not force:
            raise InitError(
                f"{target} already exists; nothing was changed. Use --force to replace it "
                "(the current file is kept as a timestamped copy)"
            )
        backup = target.with_name(f"{target.name}.{time.strftime('%Y%m%d-%H%M%S')}.bak")
        target.replace(backup)
    wanted = set(secret_keys())
    generated, notes, lines = [], [], []
    reachable = postgres_can_reach(target.resolve().parent)
    for line in example.read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match and match.group(1) in wanted and not match.group(2):
            key = match.group(1)
            line = f"{key}={secret_value(key)}"
            generated.append(key)
        elif match and match.group(1) in RELOCATED and not reachable:
            key = match.group(1)
            path = RELOCATED[key](root_state_dir(target))
            line = f"{key}={path}"
            notes.append(
                f"{key} set to {path}: PostgreSQL runs as 'postgres' and "
                f"cannot reach {target.resolve().parent}"
            )
        lines.append(line)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return InitResult(target, generated, backup, notes)
