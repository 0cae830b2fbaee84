"""Continuous WAL archiving with pgBackRest on the native stack: base backups,
point-in-time restore to a time and to the end of the archive after the data
directory is lost, and an archiving failure reported by doctor and alerted on."""

from __future__ import annotations

import json
import os
import shutil
import signal
import uuid
from datetime import UTC, datetime

import psycopg.rows

from prefectstack.settings import load_settings

from test_native_e2e import poll
from test_native_monitoring import query


def _flow_runs(stack, count: int, tag: str) -> set[str]:
    """COUNT flow runs created through the API, committed when this returns."""
    with stack.client() as client:
        flow = client.post("/flows/", json={"name": f"pitr-{tag}"}).json()["id"]
        return {
            client.post("/flow_runs/", json={"flow_id": flow, "name": f"{tag}-{i}"}).json()["id"]
            for i in range(count)
        }


def _existing(stack, ids: set[str]) -> set[str]:
    with stack.client() as client:
        body = {"flow_runs": {"id": {"any_": sorted(ids)}}, "limit": 200}
        return {r["id"] for r in client.post("/flow_runs/filter", json=body).json()}


def _doctor(stack) -> dict[str, dict]:
    result = stack.cli("doctor", "--json", check=False)
    return {row["name"]: row for row in json.loads(result.stdout)}


def _assert_archived_after(stack, moment: datetime, timeout: float) -> None:
    """A WAL segment reaches the repository after MOMENT (PostgreSQL hands one over
    within archive_timeout when anything was written)."""

    def archiver():
        with stack.db() as conn:
            conn.row_factory = psycopg.rows.dict_row
            return conn.execute("SELECT * FROM pg_stat_archiver").fetchone()

    row = poll(archiver, lambda r: (r["last_archived_time"] or moment) > moment, timeout=timeout)
    assert (row["last_archived_time"] or moment) > moment, row


def wait_for_first_backup(stack, timeout: float = 180) -> dict:
    """`backup list --json` once the scheduler's first (full) base backup is listed."""
    listed = poll(
        lambda: json.loads(stack.cli("backup", "list", "--json").stdout),
        lambda b: b["base_backups"] and b["recoverable"],
        timeout=timeout,
        interval=3,
    )
    assert listed["base_backups"][0]["kind"] == "full", listed
    return listed


def test_wal_is_archived_and_base_backups_are_listed(stack):
    wait_for_first_backup(stack)
    diff = stack.cli("backup", "--kind", "diff")
    assert "base backup written" in diff.stdout and diff.stdout.rstrip().endswith("(diff)")
    listed = json.loads(stack.cli("backup", "list", "--json").stdout)
    assert [b["kind"] for b in listed["base_backups"]][-1] == "diff"
    doctor = _doctor(stack)
    for row in ("postgres: WAL archiving", "pgbackrest: base backups",
                "pgbackrest: recoverable window"):  # fmt: skip
        assert doctor[row]["status"] == "pass", doctor[row]
    assert doctor["pgbackrest: recoverable window"]["detail"].startswith(
        listed["recoverable"]["from"][:19]
    )


def test_restore_to_a_time_keeps_exactly_the_runs_that_existed(stack):
    before = _flow_runs(stack, 5, f"before-{uuid.uuid4().hex[:6]}")
    target = datetime.now(UTC)
    after = _flow_runs(stack, 5, f"after-{uuid.uuid4().hex[:6]}")
    assert _existing(stack, before | after) == before | after

    result = stack.cli("restore", "--to-time", target.strftime("%Y-%m-%dT%H:%M:%S.%f%z"),
                       "--yes", timeout=1200)  # fmt: skip
    assert "restored" in result.stdout, result.stderr
    assert _existing(stack, before | after) == before
    with stack.db() as conn:
        later = conn.execute(
            "SELECT count(*) FROM flow_run WHERE created > %s AND created < %s",
            (target, datetime.now(UTC)),
        ).fetchone()[0]
    assert later == 0, f"{later} flow runs created after the target survived"
    doctor = poll(lambda: _doctor(stack), lambda d: all(r["status"] != "fail" for r in d.values()),
                  timeout=180, interval=5)  # fmt: skip
    assert all(r["status"] != "fail" for r in doctor.values()), doctor


def test_restore_to_latest_after_losing_the_data_directory(stack):
    kept = _flow_runs(stack, 5, f"kept-{uuid.uuid4().hex[:6]}")
    committed = datetime.now(UTC)
    timeout = int(stack.env["WAL_ARCHIVE_TIMEOUT"])
    # PostgreSQL hands the segment over within archive_timeout on its own.
    _assert_archived_after(stack, committed, timeout=timeout + 30)
    pgdata = stack.state / "postgres" / "data"
    stack.cli("stop", "postgres")
    shutil.rmtree(pgdata)  # the disk is gone
    result = stack.cli("restore", "--to-latest", "--yes", timeout=1200)
    assert "restored the cluster to the end of the WAL archive" in result.stdout, result.stderr
    assert _existing(stack, kept) == kept
    status = stack.status()
    assert all(row["healthy"] for name, row in status.items() if name.startswith("api-")), status


def test_archiving_failure_is_reported_and_alerted(stack):
    repo = load_settings(stack.env_file).pgbackrest_repo
    archive = repo / "archive" / stack.env["PROJECT_NAME"]
    mode = archive.stat().st_mode
    archive.chmod(0o000)  # the repository can no longer be written
    try:
        _flow_runs(stack, 3, "unarchived")
        with stack.db() as conn:
            conn.execute("SELECT pg_switch_wal()")
        failing = poll(lambda: _doctor(stack)["postgres: WAL archiving"],
                       lambda r: r["status"] == "fail", timeout=120, interval=3)  # fmt: skip
        assert failing["status"] == "fail" and "the last attempt failed" in failing["detail"]
        firing = poll(
            lambda: query(stack, 'ALERTS{alertname="WalArchivingFailing",alertstate="firing"}'),
            bool, timeout=240, interval=5,
        )  # fmt: skip
        assert firing, "WalArchivingFailing did not fire"
    finally:
        archive.chmod(mode)
    # A finished segment wakes the archiver at once (after three failed attempts
    # it otherwise sleeps until its next timed wake-up, up to a minute).
    _flow_runs(stack, 1, "archived-again")
    with stack.db() as conn:
        conn.execute("SELECT pg_switch_wal()")
    recovered = poll(lambda: _doctor(stack)["postgres: WAL archiving"],
                     lambda r: r["status"] == "pass", timeout=180, interval=5)  # fmt: skip
    assert recovered["status"] == "pass", recovered
    resolved = poll(
        lambda: query(stack, 'ALERTS{alertname="WalArchivingFailing",alertstate="firing"}'),
        lambda r: not r, timeout=240, interval=5,
    )  # fmt: skip
    assert not resolved


def test_postgres_process_killed_leaves_archived_data(stack):
    """A SIGKILLed server (crash) restarts from its own WAL; archiving carries on."""
    pid = stack.status()["postgres"]["pid"]
    os.kill(pid, signal.SIGKILL)
    poll(lambda: stack.status()["postgres"]["healthy"], bool, timeout=120, interval=2)
    ids = _flow_runs(stack, 2, "after-crash")
    moment = datetime.now(UTC)
    _assert_archived_after(stack, moment, timeout=int(stack.env["WAL_ARCHIVE_TIMEOUT"]) + 60)
    assert _existing(stack, ids) == ids
