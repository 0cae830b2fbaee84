"""The native stack's own PostgreSQL cluster: binaries, initdb, first-start bootstrap.

Mirrors what the official postgres image does on a new volume: the cluster's
superuser is POSTGRES_USER, POSTGRES_DB is created, then every file of
deploy/postgres/initdb/ runs in POSTGRES_DB, once.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from ..paths import asset
from ..settings import StackSettings
from .layout import Layout

MIN_VERSION = (14, 9)  # Prefect's requirement for multi-server setups
PG_SYSTEM_USER = "postgres"  # PostgreSQL refuses to run as root


class PostgresError(Exception):
    pass


def find_bindir() -> Path | None:
    """Newest /usr/lib/postgresql/<major>/bin (Debian/Ubuntu layout), else PATH."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("postgres")
    return Path(found).parent if found else None


def version(bindir: Path) -> tuple[int, int]:
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"(\d+)\.(\d+)", out)
    if not match:
        raise PostgresError(f"cannot read the PostgreSQL version from {out!r}")
    return int(match.group(1)), int(match.group(2))


def run_as_user() -> str | None:
    """The OS account PostgreSQL runs under, or None for the current user."""
    return PG_SYSTEM_USER if os.geteuid() == 0 else None


def server_flags(s: StackSettings) -> list[str]:
    """Server settings both deployment modes pass as `-c` flags."""
    return [
        f"max_connections={s.postgres_max_connections}",
        f"shared_buffers={s.postgres_shared_buffers}",
        "password_encryption=scram-sha-256",
        # Visible per process in pg_stat_activity and in the connection metrics.
        "track_activity_query_size=2048",
        # Continuous archiving (pgBackRest): a segment is handed over at most this
        # long after it was started, which bounds what a point-in-time restore loses.
        "archive_mode=on",
        f"archive_timeout={s.wal_archive_timeout}",
    ]


def server_argv(bindir: Path, layout: Layout, s: StackSettings, archive_command: str) -> list[str]:
    argv = [
        str(bindir / "postgres"),
        "-D",
        str(layout.pgdata),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        f"port={s.postgres_port}",
        "-c",
        f"unix_socket_directories={layout.pg_socket_dir}",
        "-c",
        f"archive_command={archive_command}",
    ]
    for flag in server_flags(s):
        argv += ["-c", flag]
    return argv


def _as_pg_user(argv: list[str]) -> list[str]:
    user = run_as_user()
    return ["runuser", "-u", user, "--", *argv] if user else argv


def _chown_to_pg(path: Path) -> None:
    user = run_as_user()
    if user:
        shutil.chown(path, user, user)


def _fingerprint(s: StackSettings) -> str:
    secret = f"{s.postgres_user}:{s.postgres_password.get_secret_value()}".encode()
    return hashlib.sha256(secret).hexdigest()


def check_owner(layout: Layout, s: StackSettings) -> None:
    """Refuse a cluster that was created with other credentials (another .env)."""
    marker = layout.postgres / "credentials.sha256"
    if marker.exists() and marker.read_text().strip() != _fingerprint(s):
        raise PostgresError(
            f"{layout.pgdata} was created with another POSTGRES_USER/POSTGRES_PASSWORD; "
            "use the .env that created it, or point STATE_DIR at a new directory"
        )


def initdb(bindir: Path, layout: Layout, s: StackSettings) -> bool:
    """Create the cluster if the state directory has none. Returns True if created."""
    if (layout.pgdata / "PG_VERSION").exists():
        check_owner(layout, s)
        return False
    for path in (layout.postgres, layout.pg_socket_dir):
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o700)
        _chown_to_pg(path)
    user = run_as_user()
    if user:
        probe = subprocess.run(
            ["runuser", "-u", user, "--", "test", "-w", str(layout.postgres)], check=False
        )
        if probe.returncode != 0:
            raise PostgresError(
                f"the '{user}' account cannot reach {layout.postgres}: every directory "
                f"above the state directory must be searchable by others (chmod o+x), "
                f"or set STATE_DIR to a path such as /var/lib/prefectstack"
            )
    pwfile = layout.postgres / "initdb.pw"
    pwfile.write_text(s.postgres_password.get_secret_value() + "\n")
    pwfile.chmod(0o600)
    _chown_to_pg(pwfile)
    try:
        result = subprocess.run(
            _as_pg_user(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(layout.pgdata),
                    "-U",
                    s.postgres_user,
                    f"--pwfile={pwfile}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ]
            ),
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        shutil.rmtree(layout.pgdata, ignore_errors=True)
        raise PostgresError(f"initdb failed:\n{result.stderr.strip()}")
    (layout.postgres / "credentials.sha256").write_text(_fingerprint(s) + "\n")
    return True


def bootstrap(bindir: Path, layout: Layout, s: StackSettings) -> bool:
    """On a running new cluster: create POSTGRES_DB and run the init scripts once."""
    if layout.pg_initialized.exists():
        return False
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PGHOST": "127.0.0.1",
        "PGPORT": str(s.postgres_port),
        "PGUSER": s.postgres_user,
        "PGPASSWORD": s.postgres_password.get_secret_value(),
    }
    psql = [str(bindir / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-q"]

    def run(args: list[str]) -> str:
        result = subprocess.run(psql + args, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise PostgresError(f"psql {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout.strip()

    exists = run(
        [
            "-d",
            "postgres",
            "-tA",
            "-c",
            f"SELECT 1 FROM pg_database WHERE datname = '{s.postgres_db}'",
        ]
    )
    if exists != "1":
        run(["-d", "postgres", "-c", f'CREATE DATABASE "{s.postgres_db}"'])
    for script in sorted(asset("postgres", "initdb").glob("*.sql")):
        run(["-d", s.postgres_db, "-f", str(script)])
    layout.pg_initialized.write_text("initialized by prefectstack\n")
    return True
