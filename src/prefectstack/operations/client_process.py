"""Prefect client processes as the stack's users run them: a fresh environment
and working directory each (Prefect reads PREFECT_* from the environment and from
a .env in its working directory), configured as `prefectstack client-config`
tells users to. The drill and the benchmarks run their workloads this way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def spawn(module: str, args: list[str], home: Path, client_env: dict[str, str]):
    """Start `python -m module args...` in HOME; returns (process, its log file).
    Its stdout is a pipe (the workloads print one JSON line per result)."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PREFECT_HOME": str(home),
        **client_env,
    }
    log = home / "client.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=home, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True,
        )  # fmt: skip
    return proc, log


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def finish(
    proc: subprocess.Popen, log: Path, timeout: float, ok: tuple[int, ...] = (0,)
) -> tuple[list[dict], str | None]:
    """Wait for a client (killing it after TIMEOUT s): its JSON lines, and the last
    line of its log if it exited with a code not in OK."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    if proc.returncode in ok:
        return json_lines(out), None
    tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
    return json_lines(out), tail[0]
