"""What a plain-format, gzipped pg_dump file claims: rows per table (its COPY
blocks) and the Prefect schema version (its alembic_version row). Reading it
end to end also proves it is complete: gzip checks its CRC and length, and
pg_dump writes a trailer only after the last table."""

from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

COPY_RE = re.compile(r"^COPY (?P<table>[^ ]+) \(")
TRAILER = "-- PostgreSQL database dump complete"
ALEMBIC_TABLE = "public.alembic_version"


class DumpError(Exception):
    pass


@dataclass
class Claims:
    rows: dict[str, int] = field(default_factory=dict)
    schema_version: str | None = None


def read_claims(path: Path) -> Claims:
    claims = Claims()
    table: str | None = None
    count = 0
    complete = False
    try:
        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if table is not None:
                    if line == "\\.\n":
                        claims.rows[table] = count
                        table = None
                    else:
                        count += 1
                        if table == ALEMBIC_TABLE:
                            claims.schema_version = line.strip()
                elif line.startswith("COPY "):
                    match = COPY_RE.match(line)
                    table, count = (match.group("table") if match else line.split()[1]), 0
                elif line.startswith(TRAILER):
                    complete = True
    except (EOFError, OSError, zlib.error) as exc:
        raise DumpError(f"{path} is truncated or corrupt: {exc}") from None
    if table is not None:
        raise DumpError(f"{path} ends inside the data of {table}")
    if not complete:
        raise DumpError(f"{path} is incomplete: pg_dump's closing line is missing")
    return claims
