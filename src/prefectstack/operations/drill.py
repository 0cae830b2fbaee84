"""`prefectstack drill`: kill each component of a running stack under load and count
what the crash cost.

Per component: clients run flow runs (3 tasks and a log line each) through the
load balancer; once runs are in flight the component's processes get SIGKILL;
the drill waits until they are back and every service is healthy, lets the event
pipeline settle, then counts through the API what a user would miss: client
errors, runs not COMPLETED, missing or duplicated flow runs, task runs missing
or not final, log lines missing or stored twice, state events missing.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from ..polling import poll
from .client_process import finish, spawn
from .drill_targets import DrillError
from .drill_workload import LOG_PREFIX, STOP_FILE_ENV, TASKS

FINAL_TASK_STATES = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}
# What a drill counts as lost, duplicated or stuck: any of these above 0 fails it.
LOSSES = (
    "client_errors",
    "runs_not_completed",
    "flow_runs_missing",
    "flow_runs_duplicated",
    "task_runs_missing",
    "task_runs_not_final",
    "logs_missing",
    "logs_duplicated",
    "events_missing",
)
PAGE = 200
WORKLOAD = "prefectstack.operations.drill_workload"
SLOW_RECOVERY_POLLS = 20  # 10 s at 0.5 s a poll: say what the drill waited for


@dataclass(frozen=True)
class Workload:
    clients: int = 3
    runs: int = 10  # per client
    duration_s: float = 120.0  # no client starts a run after this
    recovery_timeout_s: float = 180.0
    settle_timeout_s: float = 90.0
    # For a disruption of unknown length (a rollout): ask for more runs than it
    # can take, and each client stops after one run started once it was over.
    stop_after_disruption: bool = False


@dataclass
class Outcome:
    component: str
    killed: list[str] = field(default_factory=list)
    runs: int = 0
    client_errors: int = 0
    runs_not_completed: int = 0
    flow_runs_missing: int = 0
    flow_runs_duplicated: int = 0
    task_runs_missing: int = 0
    task_runs_not_final: int = 0
    logs_missing: int = 0
    logs_duplicated: int = 0
    events_missing: int = 0
    recovery_s: float | None = None
    worst_run_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    tag: str = ""  # the workload's flow runs carry it

    @property
    def passed(self) -> bool:
        return self.recovery_s is not None and not any(getattr(self, k) for k in LOSSES)

    def as_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


class Api:
    """The stack's API through its load balancer, as the drill's clients use it."""

    def __init__(self, client_env: dict[str, str]):
        self.client_env = client_env
        url, auth_string = client_env["PREFECT_API_URL"], client_env["PREFECT_API_AUTH_STRING"]
        user, _, password = auth_string.partition(":")
        verify = client_env.get("PREFECT_API_SSL_CERT_FILE", True)  # the stack's CA, with TLS
        self.http = httpx.Client(base_url=url, auth=(user, password), timeout=30, verify=verify)

    def _paged(self, path: str, body: dict) -> list[dict]:
        rows, offset = [], 0
        while True:
            page = self.http.post(path, json={**body, "limit": PAGE, "offset": offset})
            page.raise_for_status()
            rows += page.json()
            if len(page.json()) < PAGE:
                return rows
            offset += PAGE

    def flow_runs(self, tag: str) -> list[dict]:
        return self._paged("/flow_runs/filter", {"flow_runs": {"tags": {"all_": [tag]}}})

    def task_runs(self, run_ids: list[str]) -> list[dict]:
        return self._paged("/task_runs/filter", {"flow_runs": {"id": {"any_": run_ids}}})

    def logs(self, run_ids: list[str]) -> list[dict]:
        return self._paged("/logs/filter", {"logs": {"flow_run_id": {"any_": run_ids}}})

    def completion_events(self, run_ids: list[str], since: datetime) -> Counter:
        body = {
            "filter": {
                "any_resource": {"id": [f"prefect.flow-run.{i}" for i in run_ids]},
                "event": {"name": ["prefect.flow-run.Completed", "prefect.task-run.Completed"]},
                "occurred": {"since": since.isoformat()},
            },
            "time_unit": "day",
            "time_interval": 1,
        }
        resp = self.http.post("/events/count-by/event", json=body)
        resp.raise_for_status()
        return Counter({row["value"]: row["count"] for row in resp.json()})


def run_component(
    target, api: Api, component: str, workload: Workload, report: Callable[[str], None]
) -> Outcome:
    def crash(outcome: Outcome) -> None:
        killed_at = time.monotonic()
        before = target.kill(component)
        outcome.killed = sorted(before)
        report(f"{component}: SIGKILL {', '.join(outcome.killed)}")
        outcome.recovery_s = _wait_recovered(
            target, component, before, killed_at, workload, outcome
        )
        if outcome.recovery_s is None:
            outcome.notes.append(f"not healthy again within {workload.recovery_timeout_s}s")

    return under_load(api, component, workload, crash, report)


def under_load(
    api: Api,
    label: str,
    workload: Workload,
    disrupt: Callable[[Outcome], None],
    report: Callable[[str], None],
) -> Outcome:
    """Run the workload, call DISRUPT once runs are in flight (it records what it
    did and when the stack was whole again in the outcome), then count the losses.
    The drill's crashes and `rollout`'s test both measure this way."""
    outcome = Outcome(label, tag=f"drill-{label}-{uuid.uuid4().hex[:8]}")
    since = datetime.now(UTC) - timedelta(minutes=1)
    with tempfile.TemporaryDirectory(prefix="prefectstack-drill-") as tmp:
        stop_file = Path(tmp) / "stop"
        clients = _start_clients(api, outcome.tag, workload, Path(tmp), stop_file)
        try:
            in_flight = poll(
                lambda: len(api.flow_runs(outcome.tag)),
                lambda n: n >= 1,
                timeout=90,
                interval=1.0,
            )
            if not in_flight:
                raise DrillError("no flow run started within 90 s: is the stack healthy?")
            disrupt(outcome)
            if workload.stop_after_disruption:
                stop_file.touch()
            results = _collect(clients, workload)
        finally:
            for proc, _ in clients:
                proc.kill()
    _count(api, outcome.tag, results, outcome, since, workload, report)
    return outcome


def _start_clients(api: Api, tag: str, workload: Workload, tmp: Path, stop_file: Path):
    return [
        spawn(
            WORKLOAD,
            [tag, str(i), str(workload.runs), str(workload.duration_s)],
            tmp / f"client-{i}",
            {**api.client_env, STOP_FILE_ENV: str(stop_file)},
        )
        for i in range(workload.clients)
    ]


def _wait_recovered(target, component, before, killed_at, workload, outcome) -> float | None:
    """Seconds from the kill until every killed process runs again (new PID) and
    every service of the stack is healthy; what was waited for longest goes to notes."""
    deadline = killed_at + workload.recovery_timeout_s
    waiting: Counter = Counter()
    try:
        while time.monotonic() < deadline:
            now = target.pids(component)
            down = [name for name, pid in before.items() if not now.get(name) or now[name] == pid]
            health = target.health()
            if not down and health.ok:
                return round(time.monotonic() - killed_at, 1)
            waiting[", ".join(down) + " not restarted" if down else health.detail] += 1
            time.sleep(0.5)
        return None
    finally:
        if waiting and (slow := waiting.most_common(1)[0])[1] > SLOW_RECOVERY_POLLS:
            outcome.notes.append(f"waited {slow[1] // 2}+ s for: {slow[0]}")


def _collect(clients, workload) -> list[dict]:
    budget = workload.duration_s + workload.recovery_timeout_s
    results = []
    for proc, log in clients:
        rows, error = finish(proc, log, budget)
        if error:
            rows.append({"id": None, "state": "CLIENT_ERROR", "error": error, "seconds": 0})
        results += rows
    return results


def _count(api, tag, results, o: Outcome, since, workload, report) -> None:
    o.runs = len(results)
    o.client_errors = sum(r["state"] == "CLIENT_ERROR" for r in results)
    o.worst_run_s = max((r["seconds"] for r in results), default=0.0)
    reported = {r["id"] for r in results if r["id"]}
    markers = {f"{LOG_PREFIX} {r['marker']}" for r in results if r["id"]}
    for row in results:
        if row.get("error"):
            o.notes.append(row["error"].strip().splitlines()[-1][:200])

    def measure() -> bool:
        stored = {r["id"]: r for r in api.flow_runs(tag)}
        ids = sorted(stored)
        o.flow_runs_missing = len(reported - set(stored))
        o.flow_runs_duplicated = len(set(stored) - reported)
        completed = [i for i in ids if stored[i]["state_type"] == "COMPLETED"]
        o.runs_not_completed = len(reported) - len(reported & set(completed))
        tasks = api.task_runs(ids) if ids else []
        o.task_runs_missing = max(0, TASKS * len(completed) - len(tasks))
        o.task_runs_not_final = sum(t["state_type"] not in FINAL_TASK_STATES for t in tasks)
        ours = [
            lg["message"] for lg in (api.logs(ids) if ids else [])
            if lg["message"].startswith(LOG_PREFIX)
        ]  # fmt: skip
        o.logs_missing = len(markers - set(ours))
        o.logs_duplicated = len(ours) - len(set(ours))
        events = api.completion_events(completed, since) if completed else Counter()
        expected = {"prefect.flow-run.Completed": len(completed),
                    "prefect.task-run.Completed": TASKS * len(completed)}  # fmt: skip
        o.events_missing = sum(max(0, n - events[name]) for name, n in expected.items())
        # Only what the event pipeline delivers late can still change.
        return not (o.task_runs_missing or o.task_runs_not_final or o.logs_missing
                    or o.events_missing or o.runs_not_completed)  # fmt: skip

    settled = poll(measure, bool, timeout=workload.settle_timeout_s, interval=2.0)
    if not settled:
        report(f"{o.component}: counts still incomplete after {workload.settle_timeout_s:.0f}s")


def run(target, api: Api, components: list[str], workload: Workload, report) -> list[Outcome]:
    health = target.health()
    if not health.ok:
        raise DrillError(f"the stack is not healthy before the drill: {health.detail}")
    outcomes = []
    for component in components:
        outcomes.append(run_component(target, api, component, workload, report))
        if outcomes[-1].recovery_s is None:
            break  # the stack did not come back: later components would measure that
    return outcomes
