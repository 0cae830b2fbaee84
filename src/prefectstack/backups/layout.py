"""The backup folder layout and retention, identical to the compose deployment's
pgbackups service (prodrigestivill/postgres-backup-local): every dump lands in
last/, hard-linked into daily/, weekly/ (ISO week) and monthly/, each folder
with a <db>-latest symlink; old files are pruned per folder."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

SUFFIX = ".sql.gz"
FOLDERS = ("last", "daily", "weekly", "monthly")
KEEP_LAST_MINUTES = 1440  # the image's BACKUP_KEEP_MINS default


@dataclass(frozen=True)
class Retention:
    days: int
    weeks: int
    months: int

    def max_age_s(self, folder: str) -> float:
        # Same arithmetic as the image: find -mtime +N means older than N+1 days.
        days = {
            "last": KEEP_LAST_MINUTES / 1440,
            "daily": self.days + 1,
            "weekly": self.weeks * 7 + 2,
            "monthly": self.months * 31 + 2,
        }[folder]
        return days * 86400


@dataclass(frozen=True)
class BackupFile:
    folder: str
    path: Path
    size: int
    mtime: float

    def as_dict(self) -> dict:
        return {
            "folder": self.folder,
            "file": str(self.path),
            "size": self.size,
            "created": datetime.fromtimestamp(self.mtime).isoformat(timespec="seconds"),
        }


def names(db: str, when: datetime) -> dict[str, str]:
    return {
        "last": f"{db}-{when:%Y%m%d-%H%M%S}{SUFFIX}",
        "daily": f"{db}-{when:%Y%m%d}{SUFFIX}",
        "weekly": f"{db}-{when:%G%V}{SUFFIX}",
        "monthly": f"{db}-{when:%Y%m}{SUFFIX}",
    }


def latest_name(db: str) -> str:
    return f"{db}-latest{SUFFIX}"


def ensure_dirs(root: Path) -> None:
    # A dump holds every secret Prefect stores: its folders are the owner's only.
    # The root stays traversable (not listable) for PostgreSQL's account, whose
    # pgBackRest repository lives in it by default.
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o711)
    for path in (root / folder for folder in FOLDERS):
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o700)


@contextmanager
def exclusive(root: Path) -> Iterator[None]:
    """Hold the backup folder's lock (flock: released by the kernel if the holder dies)."""
    with open(root / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def free_moment(root: Path, db: str, when: datetime) -> datetime:
    """The first second from `when` whose last/ name is not taken (names have 1 s resolution)."""
    when = when.replace(microsecond=0)
    while (root / "last" / names(db, when)["last"]).exists():
        when += timedelta(seconds=1)
    return when


def file_into_folders(root: Path, db: str, dump: Path, when: datetime) -> Path:
    """Move a finished dump into last/ and link it into the other folders."""
    ensure_dirs(root)
    targets = names(db, when)
    last = root / "last" / targets["last"]
    dump.chmod(0o600)
    os.replace(dump, last)
    for folder in ("daily", "weekly", "monthly"):
        link = root / folder / targets[folder]
        link.unlink(missing_ok=True)
        os.link(last, link)
    for folder in FOLDERS:
        latest = root / folder / latest_name(db)
        latest.unlink(missing_ok=True)
        latest.symlink_to(targets[folder])
    return last


def prune(root: Path, db: str, retention: Retention, now: float | None = None) -> list[Path]:
    now = time.time() if now is None else now
    removed = []
    for folder in FOLDERS:
        limit = retention.max_age_s(folder)
        for path in (root / folder).glob(f"{db}-*{SUFFIX}"):
            if path.is_symlink():
                continue
            if now - path.stat().st_mtime > limit:
                path.unlink()
                removed.append(path)
    return removed


def listing(root: Path, db: str) -> list[BackupFile]:
    files = []
    for folder in FOLDERS:
        for path in sorted((root / folder).glob(f"{db}-*{SUFFIX}")):
            if path.is_symlink():
                continue
            st = path.stat()
            files.append(BackupFile(folder, path, st.st_size, st.st_mtime))
    return files
