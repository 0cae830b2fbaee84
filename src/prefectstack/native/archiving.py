"""Native mode's pgBackRest: its configuration file, the repository, the base
backup scheduler, and a client that runs it as PostgreSQL's account.

Everything pgBackRest touches belongs to the account PostgreSQL runs as
(`postgres` when prefectstack runs as root): archive-push runs inside the
server, and backups read the data directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from ..backups import pgbackrest
from ..health import Probe
from ..paths import asset
from ..settings import StackSettings
from . import postgres
from .layout import Layout
from .service import ADDONS_STAGE, Service

HEARTBEAT_MAX_AGE_S = 180  # the scheduler touches it every minute


def work_dir(layout: Layout) -> Path:
    return layout.root / "pgbackrest"


def config_path(layout: Layout) -> Path:
    return work_dir(layout) / "pgbackrest.conf"


def scheduler_script(layout: Layout) -> Path:
    """deploy/pgbackrest/scheduler.sh, copied where PostgreSQL's account (which runs
    it) can read it: a checkout under /root is closed to that account."""
    return work_dir(layout) / "scheduler.sh"


def heartbeat(layout: Layout) -> Path:
    return work_dir(layout) / "scheduler.alive"


def options(layout: Layout, s: StackSettings) -> dict[str, str]:
    return pgbackrest.options(
        s,
        pg_path=layout.pgdata,
        socket_dir=layout.pg_socket_dir,
        port=s.postgres_port,
        repo=s.pgbackrest_repo,
        work=work_dir(layout),
    )


def archive_command(layout: Layout, s: StackSettings) -> str:
    return pgbackrest.archive_command(config_path(layout), s.project_name)


def _own(path: Path) -> None:
    user = postgres.run_as_user()
    if user:
        shutil.chown(path, user, user)


def prepare(layout: Layout, s: StackSettings) -> None:
    """The work directories, the configuration, the libpq password file pgBackRest
    connects with (the cluster requires passwords on its socket too) and the
    repository, all PostgreSQL's account's."""
    work = work_dir(layout)
    local_repo = s.pgbackrest_repo_type == "posix"
    for path in (work, work / "log", work / "lock", *([s.pgbackrest_repo] if local_repo else [])):
        path.mkdir(parents=True, exist_ok=True)
        _own(path)
    work.chmod(0o700)
    user = postgres.run_as_user()
    if user and local_repo:
        probe = subprocess.run(["runuser", "-u", user, "--", "test", "-w", str(s.pgbackrest_repo)],
                               check=False)  # fmt: skip
        if probe.returncode != 0:
            raise archiving_error(user, s.pgbackrest_repo)
    files = {
        config_path(layout): pgbackrest.config_file(options(layout, s), s.project_name),
        work / "pgpass": f"*:*:*:{s.postgres_user}:{s.postgres_password.get_secret_value()}\n",
        scheduler_script(layout): asset("pgbackrest", "scheduler.sh").read_text(),
    }
    for path, text in files.items():
        path.write_text(text)
        path.chmod(0o600)
        _own(path)


def archiving_error(user: str, repo: Path) -> postgres.PostgresError:
    return postgres.PostgresError(
        f"the '{user}' account cannot write the pgBackRest repository {repo}: every directory "
        "above it must be searchable by others (chmod o+x), or set PGBACKREST_REPO_PATH"
    )


def environment(layout: Layout, s: StackSettings) -> dict[str, str]:
    return {
        "PGBACKREST_CONFIG": str(config_path(layout)),
        "PGBACKREST_STANZA": s.project_name,
        "PGPASSFILE": str(work_dir(layout) / "pgpass"),
    }


def client(layout: Layout, s: StackSettings) -> pgbackrest.PgBackRest:
    user = postgres.run_as_user()
    prefix = ["runuser", "-u", user, "--"] if user else []
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **environment(layout, s)}
    # On the command line, not only in the environment: `restore` writes them into
    # the restore_command the server runs, which has neither variable.
    args = [f"--config={config_path(layout)}", f"--stanza={s.project_name}"]
    return pgbackrest.PgBackRest(prefix, args, env, name=s.pgbackrest_repo_name)


def repository_source(layout: Layout, s: StackSettings) -> Path | pgbackrest.PgBackRest:
    """Where `backup list`, doctor and the exporter read the repository: its
    directory, or pgBackRest for an S3 store."""
    return client(layout, s) if s.pgbackrest_repo_type == "s3" else s.pgbackrest_repo


def scheduler(layout: Layout, s: StackSettings, pg_bindir: Path) -> Service:
    env = {
        **environment(layout, s),
        "PATH": f"{pg_bindir}:/usr/bin:/bin",
        "FULL_BACKUP_SCHEDULE": s.pgbackrest_full_schedule,
        "DIFF_BACKUP_SCHEDULE": s.pgbackrest_diff_schedule,
        "SCHEDULER_HEARTBEAT": str(heartbeat(layout)),
        "PGBACKREST_PG1_SOCKET_PATH": str(layout.pg_socket_dir),
        "PGBACKREST_PG1_PORT": str(s.postgres_port),
    }
    # `env` carries the (non-secret) settings: the launcher's private environment
    # file is root's, and this runs as PostgreSQL's account.
    argv = ["env", *(f"{k}={v}" for k, v in env.items()), "sh", str(scheduler_script(layout))]
    return Service(
        name="pgbackrest",
        description="pgBackRest base backups "
        f"(full {s.pgbackrest_full_schedule}, differential {s.pgbackrest_diff_schedule})",
        argv=argv,
        stage=ADDONS_STAGE,
        user=postgres.run_as_user(),
        probe=lambda: _heartbeat_fresh(layout),
        start_timeout=180.0,
    )


def _heartbeat_fresh(layout: Layout) -> Probe:
    try:
        age = time.time() - heartbeat(layout).stat().st_mtime
    except FileNotFoundError:
        return Probe(False, "no heartbeat yet (waiting for PostgreSQL or the first backup)")
    if age > HEARTBEAT_MAX_AGE_S:
        return Probe(False, f"scheduler heartbeat {age:.0f}s old")
    return Probe(True, f"scheduler heartbeat {age:.0f}s old")
