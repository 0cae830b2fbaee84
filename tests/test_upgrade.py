"""`prefectstack upgrade`: the schema check that decides whether a release can be
rolled out while the old one serves, the refusals, and a real upgrade between two
Prefect releases on PyPI, 3.9.0 -> 3.9.1 (3.9.1 adds one migration), on a native
stack under load."""

from __future__ import annotations

import json
import textwrap

import httpx
import pytest

from prefectstack.operations.doctor import installed_migrations_dir
from prefectstack.releases import migrations
from prefectstack.releases.upgrade import UpgradeError, set_env_key, validate
from prefectstack.settings import load_settings

from conftest import SECOND_STACK_PREFECT, make_env_file
from rollout_workload import rollout_under_load

OLD, NEW = SECOND_STACK_PREFECT, "3.9.1"
OLD_HEAD, NEW_HEAD = "e7f54680bce3", "91e2b8f3d6a4"


def migration(upgrade: str, downgrade: str = "pass") -> str:
    return "\n".join([
        "import sqlalchemy as sa",
        "from alembic import op",
        'revision = "aaaaaaaaaaaa"',
        'down_revision = "bbbbbbbbbbbb"',
        "def upgrade():",
        textwrap.indent(upgrade, "    "),
        "def downgrade():",
        textwrap.indent(downgrade, "    "),
    ])  # fmt: skip


@pytest.mark.parametrize(
    ("upgrade", "breaking"),
    [
        ('op.drop_column("flow_run", "x")', ["drop_column"]),
        ('op.drop_table("flow_run_notification_policy")', ["drop_table"]),
        ('op.alter_column("log", "name", new_column_name="logger")',
         ["alter_column (rename, type or NOT NULL)"]),
        ('op.alter_column("log", "name", nullable=False)',
         ["alter_column (rename, type or NOT NULL)"]),
        ('op.add_column("log", sa.Column("x", sa.String(), nullable=False))',
         ["add_column NOT NULL without a server default"]),
        ('op.execute("ALTER TABLE log RENAME TO logs")', ["SQL RENAME TO"]),
        # What older code lives with.
        ('op.add_column("log", sa.Column("x", sa.String(), nullable=True))', []),
        ('op.add_column("log", sa.Column("x", sa.Integer(), nullable=False, '
         'server_default="0"))', []),
        ('op.create_index("ix_x", "log", ["x"])', []),
        ("pass", []),
    ],
)  # fmt: skip
def test_breaking_changes_are_read_from_upgrade_only(upgrade, breaking):
    # The downgrade drops everything: it is never run by an upgrade.
    source = migration(upgrade, downgrade='op.drop_table("log")\nop.drop_column("a", "b")')
    assert migrations.breaking_changes(source) == breaking


def test_pending_migrations_after_the_database_revision():
    versions = installed_migrations_dir()
    assert migrations.head(versions) == NEW_HEAD
    pending = migrations.pending(versions, OLD_HEAD)
    assert [(m.revision, m.breaking) for m in pending] == [(NEW_HEAD, [])]
    assert migrations.pending(versions, NEW_HEAD) == []
    everything = migrations.pending(versions, None)
    assert everything[0].down == () and everything[-1].revision == NEW_HEAD
    # Prefect's history has releases an old server could not survive: the check
    # finds them (e.g. 3.4's removal of the flow-run notification tables).
    assert any("drop_table" in m.breaking for m in everything)
    with pytest.raises(LookupError, match="does not know"):
        migrations.pending(versions, "0123456789ab")


def test_upgrade_refuses_unverified_same_and_older_releases(tmp_path):
    settings = load_settings(make_env_file(tmp_path, PREFECT_VERSION=NEW))
    with pytest.raises(UpgradeError, match="not a release prefectstack was verified on"):
        validate(settings, "3.10.0")
    with pytest.raises(UpgradeError, match=r"already runs Prefect 3\.9\.1"):
        validate(settings, NEW)
    with pytest.raises(UpgradeError, match="only go forward"):
        validate(settings, OLD)
    assert validate(load_settings(make_env_file(tmp_path, PREFECT_VERSION=OLD)), NEW).target == NEW


def test_set_env_key_keeps_every_other_line_and_the_mode(tmp_path):
    env = make_env_file(tmp_path, PREFECT_VERSION=OLD)
    env.chmod(0o600)
    before = env.read_text().splitlines()
    set_env_key(env, "PREFECT_VERSION", NEW)
    after = env.read_text().splitlines()
    assert [a for a, b in zip(before, after, strict=True) if a != b] == [f"PREFECT_VERSION={OLD}"]
    assert f"PREFECT_VERSION={NEW}" in after
    assert env.stat().st_mode & 0o777 == 0o600


def _versions(stack) -> list[str]:
    return [
        httpx.get(f"http://127.0.0.1:{port}/api/admin/version", auth=stack.auth, timeout=10).json()
        for port in stack.api_ports
    ]


def test_upgrade_between_two_releases_under_load_loses_nothing(second_stack, client_home):
    """On the second stack (conftest), which starts on 3.9.0 (its environment installed by `up`)."""
    stack = second_stack
    assert _versions(stack) == [OLD, OLD]
    earlier = stack.run_flow("etl.py", "2", home=client_home)["flow_run_id"]
    with stack.client() as client:
        before = client.post("/flow_runs/count", json={}).json()

    rolled = rollout_under_load(stack, "upgrade", "--to", NEW)

    assert rolled == ["api-1", "api-2", "services-1", "services-2"], rolled
    assert _versions(stack) == [NEW, NEW]
    assert f"PREFECT_VERSION={NEW}" in stack.env_file.read_text().splitlines()
    result = stack.cli("doctor", "--json", check=False)
    doctor = {row["name"]: row for row in json.loads(result.stdout)}
    assert doctor["postgres: migrations"] == {
        "name": "postgres: migrations", "status": "pass", "detail": f"at head {NEW_HEAD}",
    }  # fmt: skip
    with stack.client() as client:
        assert client.post("/flow_runs/count", json={}).json() > before
        run = client.get(f"/flow_runs/{earlier}").json()
        assert run["state_type"] == "COMPLETED"
        tasks = client.post(
            "/task_runs/filter", json={"flow_runs": {"id": {"any_": [earlier]}}}
        ).json()
        assert tasks and {t["state_type"] for t in tasks} == {"COMPLETED"}
    backups = list((stack.dir / "backups" / "last").glob("*.sql.gz"))
    assert backups, "the upgrade took no backup"
    # Nothing left to do: the release is the one the stack runs.
    again = stack.cli("upgrade", "--to", NEW, check=False)
    assert again.returncode == 1 and "already runs Prefect 3.9.1" in again.stderr
