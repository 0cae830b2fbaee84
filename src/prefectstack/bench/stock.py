"""A stock Prefect server for `bench --compare-stock`: one `prefect server start`
(API, UI and services in one process, SQLite), as the Prefect docs start it, on a
free loopback port in a throwaway PREFECT_HOME; stopped by PID afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from ..localports import free_port
from .errors import BenchError

START_TIMEOUT_S = 120


@contextmanager
def stock_server(home: Path) -> Iterator[str]:
    """Yields the API URL of a running stock server."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    log = home / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start",
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text()[-1500:]
                raise BenchError(f"the stock Prefect server did not start:\n{tail}")
            time.sleep(0.5)
        yield url
    finally:
        # Its own session: the uvicorn and services children go with it.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
