"""Data retention from .env, applied by the background services (Prefect's
db_vacuum): the test stack keeps events and ended flow runs for a day and
vacuums every 15 s; runs and events made two days old in the database are
deleted (with their task runs and logs), newer ones stay."""

from __future__ import annotations

from test_native_e2e import poll


def _left(stack, run_id: str) -> dict[str, int]:
    """What the database still holds of one flow run."""
    resource = f"prefect.flow-run.{run_id}"
    with stack.db() as conn:
        return {
            "flow_run": conn.execute("SELECT count(*) FROM flow_run WHERE id = %s",
                                     (run_id,)).fetchone()[0],
            "task_runs": conn.execute("SELECT count(*) FROM task_run WHERE flow_run_id = %s",
                                      (run_id,)).fetchone()[0],
            "logs": conn.execute("SELECT count(*) FROM log WHERE flow_run_id = %s",
                                 (run_id,)).fetchone()[0],
            "events": conn.execute("SELECT count(*) FROM events WHERE resource_id = %s",
                                   (resource,)).fetchone()[0],
        }  # fmt: skip


def _complete(left: dict[str, int]) -> bool:
    return left["task_runs"] == 3 and bool(left["logs"]) and bool(left["events"])


def test_old_runs_and_events_are_deleted_and_newer_ones_stay(stack, client_home):
    assert stack.env["DB_VACUUM"] == "events,flow_runs"
    old = stack.run_flow("etl.py", "2", home=client_home)["flow_run_id"]
    new = stack.run_flow("etl.py", "2", home=client_home)["flow_run_id"]
    for run in (old, new):  # task runs and events arrive through Redis
        stored = poll(lambda r=run: _left(stack, r), _complete, timeout=60)
        assert _complete(stored), stored
    resource = f"prefect.flow-run.{old}"
    with stack.db() as conn:
        conn.execute(
            "UPDATE flow_run SET end_time = end_time - interval '2 days' WHERE id = %s", (old,)
        )
        conn.execute(
            "UPDATE event_resources SET occurred = occurred - interval '2 days' "
            "WHERE event_id IN (SELECT id FROM events WHERE resource_id = %s)",
            (resource,),
        )
        conn.execute(
            "UPDATE events SET occurred = occurred - interval '2 days' WHERE resource_id = %s",
            (resource,),
        )
    gone = poll(lambda: _left(stack, old), lambda d: not any(d.values()), timeout=120, interval=3)
    assert not any(gone.values()), f"left of the old run: {gone}"
    kept = _left(stack, new)
    assert kept["flow_run"] == 1 and _complete(kept), kept
