"""`prefectstack bench exporter`: boots a throwaway native stack on free ports,
fills its database with N flow runs (one bulk INSERT; state types and names
spread as in real use, 1 % of them Late), and times scrapes of the Prefect
exporter's /metrics.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg

from ..init_env import create_env
from ..localports import free_port_values
from ..paths import REPO_ROOT
from ..settings import load_settings

FILL_SQL = """
WITH flow AS (
    INSERT INTO flow (name) VALUES ('bench-flow-' || gen_random_uuid()) RETURNING id
), kinds(n, type, name) AS (
    VALUES (0, 'COMPLETED', 'Completed'), (1, 'COMPLETED', 'Completed'),
           (2, 'COMPLETED', 'Completed'), (3, 'FAILED', 'Failed'), (4, 'CRASHED', 'Crashed'),
           (5, 'CANCELLED', 'Cancelled'), (6, 'RUNNING', 'Running'), (7, 'PENDING', 'Pending'),
           (8, 'SCHEDULED', 'Scheduled'), (9, 'SCHEDULED', 'Scheduled')
)
INSERT INTO flow_run (name, flow_id, state_type, state_name, expected_start_time,
                      start_time, end_time)
SELECT 'bench-' || g, flow.id,
       kinds.type::state_type,
       CASE WHEN g %% 100 = 0 THEN 'Late' ELSE kinds.name END,
       now() - make_interval(secs => g), now() - make_interval(secs => g),
       now() - make_interval(secs => g - 1)
FROM generate_series(1, %(runs)s) AS g
CROSS JOIN flow
JOIN kinds ON kinds.n = g %% 10
"""


def _env_values() -> dict[str, str]:
    values = free_port_values(replicas=2)
    values.update(
        PREFECT_API_REPLICAS="2",
        STATE_DIR="./state",
        BACKUP_DIR="./backups",
        PROJECT_NAME="prefectstack-bench",
    )
    return values


def _throwaway_env(directory: Path) -> Path:
    env_file = create_env(REPO_ROOT / ".env.example", directory / ".env")
    lines = env_file.path.read_text().splitlines()
    values = _env_values()
    out = []
    for line in lines:
        key = line.split("=", 1)[0]
        out.append(f"{key}={values.pop(key)}" if "=" in line and key in values else line)
    env_file.path.write_text("\n".join(out) + "\n")
    return env_file.path


def run(runs: int, scrapes: int, say: Callable[[str], None]) -> dict[str, float]:
    from ..native.stack import NativeStack

    directory = Path(tempfile.mkdtemp(prefix="prefectstack-bench-", dir="/tmp"))
    directory.chmod(0o755)  # PostgreSQL's account must reach its data directory
    stack = None
    try:
        settings = load_settings(_throwaway_env(directory))
        stack = NativeStack(settings)
        say(f"starting a throwaway stack in {directory}")
        started = time.monotonic()
        stack.up()
        say(f"stack up in {time.monotonic() - started:.0f}s; inserting {runs} flow runs")
        started = time.monotonic()
        with psycopg.connect(
            host="127.0.0.1",
            port=settings.postgres_port,
            user=settings.postgres_user,
            password=settings.postgres_password.get_secret_value(),
            dbname=settings.postgres_db,
            autocommit=True,
        ) as conn:
            conn.execute(FILL_SQL, {"runs": runs})
            conn.execute("ANALYZE flow_run")
            total = conn.execute("SELECT count(*) FROM flow_run").fetchone()[0]
        say(f"{total} flow runs in the database ({time.monotonic() - started:.0f}s)")
        url = f"http://127.0.0.1:{settings.prefect_exporter_port}/metrics"
        durations = []
        with httpx.Client(timeout=60) as client:
            body = client.get(url).text  # warm-up (connection pools, plans)
            for _ in range(scrapes):
                started = time.perf_counter()
                resp = client.get(url)
                durations.append(time.perf_counter() - started)
                resp.raise_for_status()
        counted = sum(
            float(line.rsplit(" ", 1)[1])
            for line in body.splitlines()
            if line.startswith("prefectstack_flow_runs{")
        )
        durations.sort()
        return {
            "flow_runs": total,
            "flow_runs_reported": counted,
            "scrapes": scrapes,
            "p50_ms": statistics.median(durations) * 1000,
            "p95_ms": durations[int(0.95 * (len(durations) - 1))] * 1000,
            "max_ms": durations[-1] * 1000,
        }
    finally:
        if stack is not None:
            say("stopping the throwaway stack")
            stack.down()
        shutil.rmtree(directory, ignore_errors=True)
