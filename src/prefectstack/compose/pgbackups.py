"""The scheduled-backup service of the local pgbackups image.

It reads the environment contract of prodrigestivill/postgres-backup-local
(POSTGRES_HOST/PORT/DB/USER/PASSWORD, SCHEDULE, BACKUP_KEEP_DAYS/WEEKS/MONTHS,
BACKUP_DIR, HEALTHCHECK_PORT) and writes the same layout with the same code
native mode's scheduler runs (backups.operations.backup_now).

  python -m prefectstack.compose.pgbackups          # schedule forever, serve the health check
  python -m prefectstack.compose.pgbackups --once   # one backup now (/backup.sh)
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ..backups.layout import Retention
from ..backups.operations import BackupError, backup_now
from ..backups.pg import NativePg
from ..backups.schedule import run_forever, valid


def _env(key: str, default: str | None = None) -> str:
    value = os.environ.get(key, default)
    if not value:
        sys.exit(f"pgbackups: {key} is not set")
    return value


def _client() -> NativePg:
    return NativePg(
        Path(os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin")),
        host=_env("POSTGRES_HOST"),
        port=int(_env("POSTGRES_PORT", "5432")),
        user=_env("POSTGRES_USER"),
        password=_env("POSTGRES_PASSWORD"),
    )


def _retention() -> Retention:
    return Retention(
        int(_env("BACKUP_KEEP_DAYS", "7")),
        int(_env("BACKUP_KEEP_WEEKS", "4")),
        int(_env("BACKUP_KEEP_MONTHS", "6")),
    )


def backup_all() -> list[Path]:
    client, retention = _client(), _retention()
    root = Path(_env("BACKUP_DIR", "/backups"))
    return [
        backup_now(client, root, db.strip(), retention)
        for db in _env("POSTGRES_DB").split(",")
        if db.strip()
    ]


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"OK\n")

    def log_message(self, *args) -> None:
        pass


def schedule_forever() -> None:
    spec = _env("SCHEDULE", "@daily")
    if not valid(spec):
        sys.exit(f"pgbackups: SCHEDULE={spec!r} is not a supported schedule")
    port = int(_env("HEALTHCHECK_PORT", "8080"))
    server = ThreadingHTTPServer(("0.0.0.0", port), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    run_forever(spec, backup_all)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pgbackups")
    parser.add_argument("--once", action="store_true", help="take one backup now and exit")
    args = parser.parse_args(argv)
    if not args.once:
        schedule_forever()
        return
    try:
        for path in backup_all():
            print(path, flush=True)
    except BackupError as exc:
        sys.exit(str(exc))


if __name__ == "__main__":
    main()
