"""Backups of the running native stack: scheduled and on demand, listed,
verified (a truncated or corrupt dump fails), restored (round trip)."""

from __future__ import annotations

import gzip
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from conftest import PREFECTSTACK
from test_native_e2e import poll


def flow_run_ids(stack) -> set[str]:
    ids, offset = set(), 0
    with stack.client() as client:
        while True:
            page = client.post("/flow_runs/filter", json={"limit": 200, "offset": offset}).json()
            ids |= {run["id"] for run in page}
            if len(page) < 200:
                return ids
            offset += 200


def backups(stack) -> list[dict]:
    return json.loads(stack.cli("backup", "list", "--json").stdout)["dumps"]


def take_backup(stack) -> str:
    out = stack.cli("backup").stdout
    return out.split("backup written: ")[1].split(" (")[0]


def test_scheduled_backups_run(stack):
    # The session's stack runs BACKUP_SCHEDULE=@every 1m.
    log = stack.state / "logs" / "backups.log"
    written = poll(
        lambda: log.exists() and "scheduled backup written" in log.read_text(),
        bool,
        timeout=150,
        interval=2,
    )
    assert written, log.read_text() if log.exists() else "no scheduler log"
    listed = backups(stack)
    assert {"last", "daily", "weekly", "monthly"} <= {b["folder"] for b in listed}
    assert all(b["file"].endswith(".sql.gz") for b in listed)
    assert (stack.dir / "backups" / "last" / "prefect-latest.sql.gz").is_symlink()


def test_backups_started_together_each_write_a_complete_file(stack):
    """Three `prefectstack backup` at once (as when one meets the scheduler's
    run in the same second): all succeed, under three names, each verifies."""
    with ThreadPoolExecutor(3) as pool:
        written = list(pool.map(lambda _: take_backup(stack), range(3)))
    assert len(set(written)) == 3, written
    for path in written:
        assert "is good" in stack.cli("backup", "verify", path).stdout
    assert not list((stack.dir / "backups" / "last").glob("*.partial"))


def test_verify_passes_on_a_good_dump_and_fails_on_a_damaged_one(stack, tmp_path):
    good = take_backup(stack)
    result = stack.cli("backup", "verify", good)
    assert "is good" in result.stdout and "all as the dump claims" in result.stdout

    raw = Path(good).read_bytes()
    truncated = tmp_path / "truncated.sql.gz"
    truncated.write_bytes(raw[: len(raw) // 2])
    bad = stack.cli("backup", "verify", str(truncated), check=False)
    assert bad.returncode != 0
    assert "truncated or corrupt" in bad.stderr

    # A complete gzip stream whose SQL stops before the end of the dump.
    text = gzip.decompress(raw).decode()
    cut = gzip.compress(text[: text.index("COPY public.flow_run ")].encode())
    short = tmp_path / "short.sql.gz"
    short.write_bytes(cut)
    bad = stack.cli("backup", "verify", str(short), check=False)
    assert bad.returncode != 0
    assert "incomplete" in bad.stderr

    corrupt = tmp_path / "corrupt.sql.gz"
    middle = len(raw) // 2
    corrupt.write_bytes(
        raw[:middle] + bytes(b ^ 0xFF for b in raw[middle : middle + 64]) + raw[middle + 64 :]
    )
    bad = stack.cli("backup", "verify", str(corrupt), check=False)
    assert bad.returncode != 0


def test_backup_round_trip_restores_the_backed_up_state(stack, client_home):
    stack.run_flow("etl.py", "2", home=client_home)
    backed_up = flow_run_ids(stack)
    dump = take_backup(stack)
    later = stack.run_flow("etl.py", "1", home=client_home)["flow_run_id"]
    assert later in flow_run_ids(stack)

    result = stack.cli("restore", dump, "--yes", timeout=900)
    assert "restored" in result.stdout

    assert flow_run_ids(stack) == backed_up
    assert later not in flow_run_ids(stack)
    # The stack serves again: through the load balancer, and flows run.
    assert httpx.get(f"{stack.api}/ready").status_code == 200
    assert stack.run_flow("etl.py", "1", home=client_home)["state"] == "COMPLETED"
    assert all(row["healthy"] for row in stack.status().values())
    # A backup of the replaced database was taken first.
    assert "a backup of the database it replaced:" in result.stdout


def test_restore_of_a_bad_file_changes_nothing(stack, tmp_path):
    before = flow_run_ids(stack)
    bad = tmp_path / "bad.sql.gz"
    bad.write_bytes(gzip.compress(b"this is not a dump"))
    result = stack.cli("restore", str(bad), "--yes", check=False)
    assert result.returncode != 0
    assert "incomplete" in result.stderr
    assert flow_run_ids(stack) == before
    assert httpx.get(f"{stack.api}/ready").status_code == 200


def test_restore_asks_before_replacing_the_database(stack):
    dump = take_backup(stack)
    before = flow_run_ids(stack)
    result = subprocess.run(
        [*PREFECTSTACK, "restore", dump, "--env-file", str(stack.env_file)],
        input="n\n", capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "Replace database" in result.stdout
    assert flow_run_ids(stack) == before
