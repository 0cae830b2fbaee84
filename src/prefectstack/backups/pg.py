"""Running PostgreSQL's own client tools against the stack's database, either
with the local binaries over TCP (native mode) or inside the postgres container
(compose: `docker compose exec -T postgres ...`). Dumps are plain SQL, gzip
level 6, the format the compose pgbackups service writes."""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import subprocess
from pathlib import Path


class PgError(Exception):
    pass


class PgClient:
    """Base: subclasses say how a PostgreSQL client command is run."""

    def command(self, argv: list[str]) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def run(
        self, argv: list[str], *, stdin=None, stdout=subprocess.PIPE, input_text: str | None = None
    ) -> str:
        cmd, env = self.command(argv)
        result = subprocess.run(
            cmd,
            env=env,
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
            input=input_text.encode() if input_text is not None else None,
            check=False,
        )
        if result.returncode != 0:
            err = (result.stderr or b"").decode(errors="replace").strip()
            raise PgError(f"{argv[0]} failed: {err[-2000:]}")
        return (result.stdout or b"").decode(errors="replace") if stdout is subprocess.PIPE else ""

    def query(self, db: str, sql: str) -> str:
        return self.run(["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql])

    def dump(self, db: str, target: Path) -> None:
        with target.open("wb") as out:
            self.run(["pg_dump", "-d", db, "-Z6"], stdout=out)

    def load(self, db: str, dump: Path) -> None:
        """Feed a gzipped plain dump to psql, stopping at the first error."""
        cmd, env = self.command(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-d", db]
        )
        proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            with gzip.open(dump, "rb") as src:
                shutil.copyfileobj(src, proc.stdin, 1 << 20)
        except (OSError, EOFError) as exc:
            proc.kill()
            proc.wait()
            raise PgError(f"reading {dump} failed: {exc}") from None
        except BrokenPipeError:
            pass
        finally:
            if proc.stdin and not proc.stdin.closed:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
        err = proc.stderr.read().decode(errors="replace").strip()
        if proc.wait() != 0:
            raise PgError(f"restoring {dump.name} failed: {err[-2000:]}")


class NativePg(PgClient):
    def __init__(self, bindir: Path, *, host: str, port: int, user: str, password: str):
        self.bindir = bindir
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PGHOST": host,
            "PGPORT": str(port),
            "PGUSER": user,
            "PGPASSWORD": password,
            "PGCONNECT_TIMEOUT": "10",
            "PGAPPNAME": "prefectstack-backup",
        }

    def command(self, argv: list[str]) -> tuple[list[str], dict[str, str]]:
        return [str(self.bindir / argv[0]), *argv[1:]], self.env


class ComposePg(PgClient):
    """Client tools of the postgres container (its local socket trusts its user)."""

    def __init__(self, compose: list[str], *, user: str, port: int):
        self.compose = compose
        self.user = user
        self.port = port

    def command(self, argv: list[str]) -> tuple[list[str], dict[str, str]]:
        return (
            [*self.compose, "exec", "-T", "postgres", argv[0], "-U", self.user,
             "-p", str(self.port), *argv[1:]],
            dict(os.environ),
        )  # fmt: skip
