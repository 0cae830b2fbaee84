"""A pgBackRest repository in an S3-compatible store (native mode), on the
second stack (conftest): WAL and base backups reach the bucket and nothing is
kept on the local disk; `backup list`, doctor and the exporter read the
repository through pgBackRest; a point-in-time restore comes back from the bucket."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from test_native_archiving import _doctor, _existing, _flow_runs, wait_for_first_backup
from test_native_e2e import poll
from test_native_monitoring import query

ROWS = ("postgres: WAL archiving", "pgbackrest: base backups", "pgbackrest: recoverable window")


def test_wal_and_base_backups_go_to_the_bucket(second_stack):
    stack = second_stack
    wait_for_first_backup(stack)
    project = stack.env["PROJECT_NAME"]
    segments = stack.s3.objects(f"pgbackrest/archive/{project}/")
    assert any(key.endswith(".lz4") for key in segments), segments
    assert stack.s3.objects(f"pgbackrest/backup/{project}/backup.info")
    assert not (stack.dir / "backups" / "pgbackrest").exists()
    doctor = _doctor(stack)
    for row in ROWS:
        assert doctor[row]["status"] == "pass", doctor[row]
    # The exporter reads the same through pgBackRest, for the dashboard and alerts.
    backups = poll(lambda: query(stack, "prefectstack_pgbackrest_backups"), bool, timeout=90)
    assert backups and float(backups[0]["value"][1]) >= 1, backups


def test_restore_to_a_time_from_the_bucket(second_stack):
    stack = second_stack
    before = _flow_runs(stack, 3, f"before-{uuid.uuid4().hex[:6]}")
    target = datetime.now(UTC)
    after = _flow_runs(stack, 3, f"after-{uuid.uuid4().hex[:6]}")
    result = stack.cli("restore", "--to-time", target.strftime("%Y-%m-%dT%H:%M:%S.%f%z"),
                       "--yes", timeout=1200)  # fmt: skip
    assert "restored" in result.stdout, result.stderr
    assert _existing(stack, before | after) == before
    doctor = poll(lambda: _doctor(stack), lambda d: all(r["status"] != "fail" for r in d.values()),
                  timeout=180, interval=5)  # fmt: skip
    assert all(row["status"] != "fail" for row in doctor.values()), doctor
    assert doctor["pgbackrest: recoverable window"]["status"] == "pass"
