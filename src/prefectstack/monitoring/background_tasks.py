"""Background task runs (`task.delay()`) waiting too long for a task worker.

A deferred task run stays SCHEDULED until a worker serving its task key takes
it from the queue. Long waits mean no worker serves that key (or all are
busy), or the run was queued before the Redis task queue was enabled (Prefect's
in-memory queue died with its replica). Read from PostgreSQL: the Scheduled
state carries `deferred` in its details, and the run's next scheduled start is
when it became due. One query for doctor and the exporter.
"""

from __future__ import annotations

from dataclasses import dataclass

STUCK_SQL = """
SELECT tr.task_key, count(*),
       extract(epoch FROM now() - min(coalesce(tr.next_scheduled_start_time, tr.state_timestamp)))
FROM task_run tr JOIN task_run_state s ON s.id = tr.state_id
WHERE tr.state_type = 'SCHEDULED'
  AND s.state_details @> '{"deferred": true}'
  AND coalesce(tr.next_scheduled_start_time, tr.state_timestamp)
      < now() - make_interval(secs => %s)
GROUP BY tr.task_key
ORDER BY count(*) DESC
"""


@dataclass(frozen=True)
class Stuck:
    task_key: str
    runs: int
    oldest_age_s: float


def stuck_background_task_runs(conn, older_than_s: float) -> list[Stuck]:
    """Per task key, deferred task runs SCHEDULED for longer than `older_than_s`."""
    rows = conn.execute(STUCK_SQL, (older_than_s,)).fetchall()
    return [Stuck(key, int(n), float(age)) for key, n, age in rows]
