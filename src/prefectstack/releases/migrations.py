"""Prefect's PostgreSQL schema migrations: the head a release ships, the ones a
database still needs, and whether the code already running can live with them.

Prefect documents no guarantee that a server keeps working on a schema a newer
release migrated. A rolling upgrade relies on it, so the upgrade reads the
`upgrade()` of every pending migration and refuses one that removes or renames
what older code reads or writes (tables, columns), changes a column's type or
makes it NOT NULL, or adds a NOT NULL column without a default that older code
would not fill in. Adding tables, nullable columns and indexes is safe.

`python -m prefectstack.releases.migrations` prints, as JSON, the database's
revision and the pending migrations of the Prefect installed beside it: the
upgrade runs it in the next release's environment (native) or image (compose).
"""

from __future__ import annotations

import ast
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

DESTRUCTIVE_CALLS = {"drop_table", "drop_column", "rename_table", "drop_constraint"}
DESTRUCTIVE_SQL = re.compile(
    r"\b(DROP\s+(TABLE|COLUMN)|RENAME\s+(TO|COLUMN)|ALTER\s+COLUMN\s+\S+\s+(TYPE|SET\s+NOT\s+NULL))\b",
    re.I,
)


@dataclass
class Migration:
    revision: str
    down: tuple[str, ...]
    file: str
    breaking: list[str] = field(default_factory=list)


def _literal(node: ast.AST, name: str) -> ast.AST | None:
    return next((kw.value for kw in getattr(node, "keywords", []) if kw.arg == name), None)


def _is(node: ast.AST | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value == value


def breaking_changes(source: str) -> list[str]:
    """What the migration's upgrade() does that code of the previous release may
    not survive."""
    tree = ast.parse(source)
    upgrade = next(
        (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "upgrade"), None
    )
    found = []
    for node in ast.walk(upgrade) if upgrade else ():
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            call = node.func.attr
            if call in DESTRUCTIVE_CALLS:
                found.append(call)
            elif call == "alter_column" and (
                _literal(node, "new_column_name") is not None
                or _literal(node, "type_") is not None
                or _is(_literal(node, "nullable"), False)
            ):
                found.append("alter_column (rename, type or NOT NULL)")
            elif call == "add_column" and any(
                isinstance(arg, ast.Call)
                and _is(_literal(arg, "nullable"), False)
                and _literal(arg, "server_default") is None
                for arg in node.args
            ):
                found.append("add_column NOT NULL without a server default")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = DESTRUCTIVE_SQL.search(node.value)
            if match:
                found.append(f"SQL {' '.join(match.group(0).split()).upper()}")
    return found


def read(versions_dir: Path) -> dict[str, Migration]:
    migrations = {}
    for path in versions_dir.glob("*.py"):
        text = path.read_text()
        revision = re.search(r"^revision\s*=\s*['\"]([0-9a-f]+)['\"]", text, re.M)
        down = re.search(r"^down_revision\s*=\s*(.+)$", text, re.M)
        if not revision:
            continue
        parents = tuple(re.findall(r"[0-9a-f]{12}", down.group(1))) if down else ()
        migrations[revision.group(1)] = Migration(revision.group(1), parents, path.name)
    return migrations


def head(versions_dir: Path) -> str:
    """The newest migration the release ships (its PostgreSQL branch)."""
    migrations = read(versions_dir)
    parents = {p for m in migrations.values() for p in m.down}
    return ",".join(sorted(set(migrations) - parents))


def pending(versions_dir: Path, current: str | None) -> list[Migration]:
    """Migrations between CURRENT (the database's revision) and the head, oldest
    first, each with what in it would break the code already running."""
    migrations = read(versions_dir)
    if current is not None and current not in migrations:
        raise LookupError(
            f"the database is at revision {current}, which this Prefect release does not know "
            "(is the database newer than the release?)"
        )
    todo, stack, seen = [], [head(versions_dir)], {current}
    while stack:
        revision = stack.pop()
        if revision in seen or revision not in migrations:
            continue
        seen.add(revision)
        migration = migrations[revision]
        migration.breaking = breaking_changes((versions_dir / migration.file).read_text())
        todo.append(migration)
        stack.extend(migration.down)
    return list(reversed(todo))


def _main() -> None:
    import prefect.server.database as database
    import psycopg

    versions_dir = Path(database.__file__).parent / "_migrations" / "versions" / "postgresql"
    env = os.environ
    with psycopg.connect(
        host=env["PREFECT_API_DATABASE_HOST"],
        port=int(env.get("PREFECT_API_DATABASE_PORT", "5432")),
        user=env["PREFECT_API_DATABASE_USER"],
        password=env.get("PREFECT_API_DATABASE_PASSWORD", ""),
        dbname=env["PREFECT_API_DATABASE_NAME"],
        connect_timeout=10,
        application_name="prefectstack-upgrade",
    ) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    current = row[0] if row else None
    print(
        json.dumps(
            {
                "current": current,
                "head": head(versions_dir),
                "pending": [asdict(m) for m in pending(versions_dir, current)],
            }
        )
    )


if __name__ == "__main__":
    _main()
