"""prefectstack's Prefect plugin as deploy/prefect/prefect.env loads it into a
fresh Prefect process (no server needed)."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.plugins import HookContext

from prefectstack.localports import free_port
from prefectstack.prefect_env import shared_env
from prefectstack.prefect_plugin import failed_services, setup_environment

PROBE = """
import asyncio
import prefect
from docket import Docket, Worker
from prefect.server.task_queue import MultiQueue, TaskQueue
from prefect_redis import messaging
from prefect.server.events import stream

async def main():
    async with Docket(name="probe", url="memory://") as docket:
        print(TaskQueue.put.__qualname__, MultiQueue.get.__qualname__,
              Worker(docket).redelivery_timeout.total_seconds(),
              messaging._trim_stream_to_lowest_delivered_id.__module__,
              stream.events.__module__,
              messaging.Publisher._publish_current_batch.__module__)

asyncio.run(main())
"""


def test_prefect_env_installs_every_part_of_the_plugin():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT")}
    env.update(shared_env())
    # What each mode adds from .env; nothing here connects to it.
    env.update(PREFECT_API_DATABASE_HOST="127.0.0.1", PREFECT_API_DATABASE_USER="prefect",
               PREFECT_API_DATABASE_NAME="prefect")  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    seconds = float(shared_env()["PREFECTSTACK_DOCKET_REDELIVERY_SECONDS"])
    assert out == ["RedisTaskQueue.put", "RedisMultiQueue.get", str(seconds),
                   "prefectstack.prefect_plugin.stream_trimming",
                   "prefectstack.prefect_plugin.events_replay",
                   "prefectstack.prefect_plugin.publish_dedupe"]  # fmt: skip


def test_the_plugin_refuses_a_prefect_release_it_was_not_read_against():
    ctx = HookContext(prefect_version="3.10.0", api_url=None, logger_factory=logging.getLogger)
    expected = re.escape("verified on Prefect 3.9.0, 3.9.1, not 3.10.0")
    with pytest.raises(RuntimeError, match=expected):
        setup_environment(ctx=ctx)


def test_a_services_process_whose_service_fails_exits_with_its_error(tmp_path):
    """Prefect leaves a failed service dead in a live process; with the plugin the
    process exits so its supervisor restarts it. The reactive triggers read the
    automations from PostgreSQL at start: with nothing listening there, they fail."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT")}
    env.update(shared_env())
    env.update(
        PREFECT_HOME=str(tmp_path),
        PREFECT_API_DATABASE_HOST="127.0.0.1",
        PREFECT_API_DATABASE_PORT=str(free_port()),
        PREFECT_API_DATABASE_USER="prefect",
        PREFECT_API_DATABASE_NAME="prefect",
        PREFECT_MESSAGING_BROKER="prefect.server.utilities.messaging.memory",
        PREFECT_MESSAGING_CACHE="prefect.server.utilities.messaging.memory",
        PREFECT_SERVER_DOCKET_URL="memory://",
    )
    prefect = Path(sys.executable).with_name("prefect")
    result = subprocess.run(
        [str(prefect), "server", "services", "start"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == failed_services.EXIT_CODE, result.stderr[-3000:]
    failure = result.stderr.split("background service ReactiveTriggers failed", 1)
    assert len(failure) == 2, result.stderr[-3000:]
    assert "ConnectionRefusedError" in failure[1]
