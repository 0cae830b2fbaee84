"""What pgBackRest's repository holds: the base backups and when the newest
WAL segment reached it.

A directory repository is read from its files (backup/<stanza>/backup.info, the
archive's segments), which lets `backup list`, doctor and the exporter answer
wherever it is mounted, including the compose exporter's container, which has
no pgBackRest. An S3 repository has no files here: pgBackRest reads it.
"""

from __future__ import annotations

import configparser
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .pgbackrest import BaseBackup, PgBackRest


@dataclass(frozen=True)
class RepoStatus:
    backups: list[BaseBackup]  # oldest first
    newest_wal_at: datetime | None  # when the newest WAL segment reached the repository

    @property
    def window(self) -> tuple[datetime, datetime] | None:
        """The span a point-in-time restore can reach, or None without a backup."""
        if not self.backups:
            return None
        end = max(filter(None, (self.newest_wal_at, self.backups[-1].stopped)))
        return self.backups[0].stopped, end

    def newest(self, kind: str | None = None) -> BaseBackup | None:
        found = [b for b in self.backups if kind is None or b.kind == kind]
        return found[-1] if found else None


def _when(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def read(repo: Path, stanza: str) -> RepoStatus:
    """The stanza's backups and archive; empty when the repository has neither."""
    info = repo / "backup" / stanza / "backup.info"
    # strict=False: the file repeats its [backrest] section (version, then checksum).
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # labels are case-sensitive
    backups = []
    if info.is_file():
        parser.read_string(info.read_text())
        for label, raw in parser["backup:current"].items() if "backup:current" in parser else ():
            meta = json.loads(raw)
            backups.append(
                BaseBackup(
                    label=label,
                    kind=meta["backup-type"],
                    started=_when(meta["backup-timestamp-start"]),
                    stopped=_when(meta["backup-timestamp-stop"]),
                    size=int(meta.get("backup-info-repo-size-delta", 0)),
                )
            )
    archive = repo / "archive" / stanza
    segments = [p for p in archive.glob("*/*/*") if p.is_file() and "-" in p.name]
    newest = max((p.stat().st_mtime for p in segments), default=None)
    return RepoStatus(
        sorted(backups, key=lambda b: b.stopped),
        _when(int(newest)) if newest is not None else None,
    )


def query(client: PgBackRest, stanza: str) -> RepoStatus:
    """The same, through pgBackRest (any repository type)."""
    info = client.info()
    newest = None
    if info.archive_max and info.archive_id:
        # Segments are filed under the first 16 characters of their name.
        folder = f"archive/{stanza}/{info.archive_id}/{info.archive_max[:16]}"
        newest = client.written(folder, info.archive_max)
    return RepoStatus(info.backups, newest)


def status(where: Path | PgBackRest, stanza: str) -> RepoStatus:
    """From the repository's directory, or from pgBackRest."""
    return query(where, stanza) if isinstance(where, PgBackRest) else read(where, stanza)
