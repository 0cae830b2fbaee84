"""Continuous WAL archiving and base backups with pgBackRest, in both modes.

PostgreSQL hands each WAL segment to `pgbackrest archive-push` (archive_mode=on,
archive_timeout from .env); a scheduler (deploy/pgbackrest/scheduler.sh, the same
script in both modes) takes full and differential base backups; together they
let `restore --to-time` bring the cluster to any second the repository covers.

The options are pgBackRest's own, named once here: native mode writes them to
a configuration file, compose gives them to its containers as PGBACKREST_*
variables (docker-compose.yml; a test holds the two to the same values).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..settings import StackSettings


class BackRestError(Exception):
    pass


UNREADABLE_REPO = 99  # pgBackRest's "other" stanza status: the repository could not be read


def options(
    s: StackSettings, *, pg_path: Path, socket_dir: Path, port: int, repo: Path, work: Path
) -> dict[str, str]:
    """pgBackRest's options for the stack's cluster (the stanza is the project)."""
    return {
        **repo_options(s, repo),
        "repo1-retention-full": str(s.pgbackrest_retention_full),
        "pg1-path": str(pg_path),
        "pg1-port": str(port),
        "pg1-socket-path": str(socket_dir),
        "pg1-user": s.postgres_user,
        "log-path": str(work / "log"),
        "lock-path": str(work / "lock"),
        "log-level-console": "warn",
        "log-level-file": "info",
        # A checkpoint right away instead of waiting for the next one.
        "start-fast": "y",
        "compress-type": "lz4",
    }


def repo_options(s: StackSettings, repo: Path) -> dict[str, str]:
    """Where the repository is: the directory REPO, or the S3-compatible store."""
    if s.pgbackrest_repo_type != "s3":
        return {"repo1-type": "posix", "repo1-path": str(repo)}
    opts = {
        "repo1-type": "s3",
        "repo1-path": s.pgbackrest_s3_path,
        "repo1-s3-endpoint": s.pgbackrest_s3_endpoint or "",  # host or host:port
        "repo1-s3-bucket": s.pgbackrest_s3_bucket or "",
        "repo1-s3-region": s.pgbackrest_s3_region or "",
        "repo1-s3-key": s.pgbackrest_s3_key or "",
        "repo1-s3-key-secret": s.pgbackrest_s3_key_secret.get_secret_value()
        if s.pgbackrest_s3_key_secret
        else "",
        "repo1-s3-uri-style": s.pgbackrest_s3_uri_style,
    }
    if s.pgbackrest_s3_ca_file:
        opts["repo1-storage-ca-file"] = str(s.pgbackrest_s3_ca_file)
    return opts


def config_file(opts: dict[str, str], stanza: str) -> str:
    """pgbackrest.conf: the cluster's options (pg1-*) belong to the stanza's section."""
    sections = {"global": {}, stanza: {}}
    for key, value in opts.items():
        sections[stanza if key.startswith("pg1-") else "global"][key] = value
    return "\n".join(
        f"[{name}]\n" + "".join(f"{k}={v}\n" for k, v in values.items())
        for name, values in sections.items()
    )


def env_vars(opts: dict[str, str], stanza: str) -> dict[str, str]:
    """The same options as PGBACKREST_* variables (how compose passes them)."""
    env = {f"PGBACKREST_{key.upper().replace('-', '_')}": value for key, value in opts.items()}
    return {"PGBACKREST_STANZA": stanza, **env}


def archive_command(config: Path | None, stanza: str | None) -> str:
    """PostgreSQL's archive_command: with a config file (native) or the container's
    PGBACKREST_* variables (compose)."""
    flags = (f" --config={config}" if config else "") + (f" --stanza={stanza}" if stanza else "")
    return f"pgbackrest{flags} archive-push %p"


@dataclass(frozen=True)
class BaseBackup:
    label: str
    kind: str  # full | diff | incr
    started: datetime
    stopped: datetime
    size: int  # bytes in the repository


@dataclass(frozen=True)
class RepoInfo:
    backups: list[BaseBackup]
    archive_min: str | None  # oldest WAL segment kept
    archive_max: str | None  # newest WAL segment archived
    archive_id: str | None  # the archive's directory for the cluster's version ("15-1")
    status: str  # pgBackRest's stanza status message ("ok", "no valid backups", ...)

    @property
    def oldest(self) -> BaseBackup | None:
        return self.backups[0] if self.backups else None

    @property
    def newest(self) -> BaseBackup | None:
        return self.backups[-1] if self.backups else None


def parse_info(text: str) -> RepoInfo:
    """`pgbackrest info --output=json` of one stanza."""
    stanzas = json.loads(text)
    if not stanzas:
        return RepoInfo([], None, None, None, "no stanza")
    stanza = stanzas[0]
    # An unreadable repository (unreachable store, TLS, credentials) is a status
    # with code 99 and pgBackRest's exit code 0: an error here, not "no backups".
    for repo in stanza.get("repo", []):
        if repo.get("status", {}).get("code") == UNREADABLE_REPO:
            raise BackRestError(f"pgbackrest info: {repo['status'].get('message', 'error')}")

    def when(epoch: int) -> datetime:
        return datetime.fromtimestamp(epoch, UTC)

    backups = [
        BaseBackup(
            label=b["label"],
            kind=b["type"],
            started=when(b["timestamp"]["start"]),
            stopped=when(b["timestamp"]["stop"]),
            size=int(b.get("info", {}).get("repository", {}).get("delta", 0)),
        )
        for b in stanza.get("backup", [])
    ]
    archive = (stanza.get("archive") or [{}])[-1]
    return RepoInfo(
        sorted(backups, key=lambda b: b.stopped),
        archive.get("min"),
        archive.get("max"),
        archive.get("id"),
        stanza.get("status", {}).get("message", "unknown"),
    )


class PgBackRest:
    """Runs pgBackRest commands the way a mode needs: PREFIX is what comes before
    `pgbackrest` (runuser, docker compose exec), ENV the process environment."""

    def __init__(
        self,
        prefix: list[str],
        args: list[str],
        env: dict[str, str] | None = None,
        name: str = "the pgBackRest repository",
    ):
        self.prefix = prefix
        self.args = args  # --config / --stanza when not in the environment
        self.env = env
        self.name = name  # the repository, as messages name it

    def __str__(self) -> str:
        return self.name

    def run(
        self, command: str, *options: str, timeout: float = 3600, path: str | None = None
    ) -> str:
        """pgBackRest COMMAND with OPTIONS, and the repository PATH it takes (repo-ls)."""
        argv = [*self.prefix, "pgbackrest", *self.args, *options, command, *filter(None, [path])]
        try:
            result = subprocess.run(
                argv, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackRestError(f"pgbackrest {command}: {exc}") from None
        if result.returncode != 0:
            detail = (result.stderr.strip() or result.stdout.strip())[-1500:]
            raise BackRestError(f"pgbackrest {command} failed (exit {result.returncode}): {detail}")
        return result.stdout

    def stanza_create(self) -> None:
        self.run("stanza-create", timeout=120)

    def check(self) -> None:
        """Forces a WAL switch and waits until the segment is archived."""
        self.run("check", timeout=180)

    def backup(self, kind: str) -> None:
        self.run("backup", f"--type={kind}")

    def info(self) -> RepoInfo:
        # No log file: a read may run as another account than the archiver's
        # (root, for the exporter) and must not leave it a file it cannot append to.
        return parse_info(self.run("info", "--output=json", "--log-level-file=off", timeout=120))

    def written(self, directory: str, prefix: str) -> datetime | None:
        """When the newest file in the repository's DIRECTORY whose name starts with
        PREFIX was written (a WAL segment's file name adds its checksum)."""
        options = ("--output=json", "--log-level-file=off", f"--filter=^{prefix}")
        listing = json.loads(self.run("repo-ls", *options, path=directory, timeout=120))
        times = [entry["time"] for entry in listing.values() if entry.get("type") == "file"]
        return datetime.fromtimestamp(max(times), UTC) if times else None

    def restore(self, target: datetime | None) -> None:
        """Into an empty data directory: to TARGET, or to the end of the archive."""
        options = ["--target-action=promote"]
        if target is not None:
            stamp = target.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
            options += ["--type=time", f"--target={stamp}"]
        else:
            options = []
        self.run("restore", *options)
