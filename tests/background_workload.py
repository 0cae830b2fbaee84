"""Background tasks through the load balancer, for the tests of both modes:
task workers and submitters are client processes on the host, pointed at the
published LB URL only, sharing result storage as users must. They run outside
the checkout: Prefect reads a `.env` in the working directory, and the stack's
(PREFECT_SERVER_DATABASE_SQLALCHEMY_*) breaks Prefect 3.9.1's context hydration in
task workers (README, "Pointing clients and workers at the stack")."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from prefectstack.client_config import RETRY_EXTRA_CODES
from prefectstack.polling import poll

from conftest import FLOWS

SCRIPT = str(FLOWS / "background.py")


class BackgroundWorkload:
    def __init__(self, stack, tmp_path: Path):
        self.stack = stack
        self.tmp = tmp_path
        self.markers = tmp_path / "markers"
        self.markers.mkdir()
        self.workers: list[subprocess.Popen] = []
        self._homes = 0

    def env(self) -> dict[str, str]:
        self._homes += 1
        home = self.tmp / f"home-{self._homes}"
        home.mkdir()
        env = self.stack.client_env(home)
        env["PREFECT_LOCAL_STORAGE_PATH"] = str(self.tmp / "storage")
        env["PREFECT_CLIENT_RETRY_EXTRA_CODES"] = RETRY_EXTRA_CODES
        env["PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW"] = "ignore"
        return env

    def start_workers(self, n: int) -> None:
        for _ in range(n):
            log = (self.tmp / f"worker-{len(self.workers)}.log").open("w")
            self.workers.append(
                subprocess.Popen(
                    [sys.executable, SCRIPT, "serve"],
                    env=self.env(),
                    cwd=self.tmp,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )

    def submit(self, count: int, pause: float = 0.0) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, SCRIPT, "submit", str(self.markers), str(count), str(pause)],
            env=self.env(),
            cwd=self.tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    @staticmethod
    def submitted(proc: subprocess.Popen, timeout: float = 300) -> list[str]:
        stdout, stderr = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, stderr
        return json.loads(stdout.strip().splitlines()[-1])["ids"]

    def states(self, ids: list[str]) -> Counter:
        with self.stack.client() as client:
            body = {"task_runs": {"id": {"any_": ids}}, "limit": 200}
            rows = client.post("/task_runs/filter", json=body).json()
        return Counter(r["state_type"] for r in rows)

    def assert_each_completed_once(self, ids: list[str], timeout: float = 180) -> None:
        """Every run COMPLETED in Prefect and executed by exactly one worker, once."""
        assert len(set(ids)) == len(ids)
        states = poll(
            lambda: self.states(ids), lambda c: c["COMPLETED"] == len(ids), timeout=timeout
        )
        executions = Counter(p.name.split(".")[0] for p in self.markers.iterdir())
        assert states["COMPLETED"] == len(ids), (states, self.diagnose(ids, executions))
        assert set(executions) == set(ids), self.logs()
        assert [i for i, n in executions.items() if n > 1] == [], "a run executed twice"

    def diagnose(self, ids: list[str], executions: Counter) -> str:
        """What each unfinished run went through: its executions by the workers,
        the state events the stack persisted for it, the worker log lines naming it."""
        with self.stack.client() as client:
            body = {"task_runs": {"id": {"any_": ids}}, "limit": 200}
            rows = client.post("/task_runs/filter", json=body).json()
            report = []
            for row in rows:
                if row["state_type"] == "COMPLETED":
                    continue
                run = row["id"]
                flt = {"filter": {"resource": {"id": [f"prefect.task-run.{run}"]}}, "limit": 50}
                events = client.post("/events/filter", json=flt).json()["events"]
                lines = [
                    line
                    for log in sorted(self.tmp.glob("worker-*.log"))
                    for line in log.read_text().splitlines()
                    if run in line
                ]
                report.append(
                    f"{run}: state {row['state_type']}, executed {executions[run]}x, "
                    f"persisted events {sorted((e['occurred'], e['event']) for e in events)}, "
                    f"worker log {lines}"
                )
        return "\n".join(report) + "\n" + self.logs()

    def logs(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in sorted(self.tmp.glob("worker-*.log")))

    def stop(self) -> None:
        for proc in self.workers:
            proc.kill()
            proc.wait(timeout=30)
