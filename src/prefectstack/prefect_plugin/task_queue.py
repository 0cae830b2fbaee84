"""Prefect's background-task queue on Redis, shared by every API replica.

Prefect 3.9.1 keeps the runs of `task.delay()` in an asyncio.Queue inside each
API process (prefect/server/task_queue.py): behind a load balancer a run
created through one replica only reaches task workers whose websocket
(/api/task_runs/subscriptions/scheduled) landed on that replica, and a replica
that dies takes its queue with it (PrefectHQ/prefect#21218). This module gives
`TaskQueue` and `MultiQueue` the same interface on Redis lists, so any replica
enqueues and any replica delivers.

Delivery, per subscription (one MultiQueue per worker websocket):
- a Lua script atomically pops the next run (retry list first, as Prefect does)
  and records it as in flight under the subscription, whose heartbeat key it
  refreshes;
- the websocket handler calls `get()` again only after the worker acknowledged
  the previous run, so that call settles it; `retry()` (the send failed) moves
  it back to the retry list;
- a subscription whose heartbeat expired (its replica died, or its handler
  ended between the send and the acknowledgement) had its in-flight run
  requeued by the next `get()` on any replica.
A run is therefore never dropped by a replica crash; it can be delivered twice
only if the replica dies in the microseconds between receiving the
acknowledgement and the next `get()`.

Redis is the messaging broker's (prefect-redis settings, PREFECT_REDIS_MESSAGING_*),
so nothing about it is configured twice. Queues are unbounded (Prefect's
max-queue-size settings blocked the submitting request when full); a Redis
outage makes `get()` wait and `put()` retry for up to PUT_RETRY_SECONDS.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

PREFIX = "prefectstack:task-queue"
INFLIGHT = f"{PREFIX}:inflight"  # hash: task run id -> "<subscription>\n<task key>\n<run>"
HEARTBEAT_SECONDS = 15  # a live handler calls get() about every second; workers ack at once
REAP_EVERY = 5.0  # seconds between sweeps for in-flight runs of dead subscriptions
POLL_SECONDS = 0.05  # Prefect's MultiQueue polls every 0.01 s
PUT_RETRY_SECONDS = 30.0
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)

# KEYS: heartbeat key, then the candidate lists in order. ARGV: heartbeat TTL,
# subscription id, the task run id to settle (or ""), then each list's task key.
TAKE = """
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
if ARGV[3] ~= '' then redis.call('HDEL', KEYS[#KEYS], ARGV[3]) end
for i = 2, #KEYS - 1 do
  local run = redis.call('LPOP', KEYS[i])
  if run then
    local id = cjson.decode(run)['id']
    redis.call('HSET', KEYS[#KEYS], id, ARGV[2] .. '\\n' .. ARGV[3 + i - 1] .. '\\n' .. run)
    return run
  end
end
return false
"""

# KEYS: in-flight hash, retry list. ARGV: task run id, run.
RETRY = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[2])
return 1
"""

# KEYS: in-flight hash. ARGV: heartbeat prefix, list prefix.
REAP = """
local moved = 0
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local sub, key, run = string.match(entries[i + 1], '^([^\\n]*)\\n([^\\n]*)\\n(.*)$')
  if sub and redis.call('EXISTS', ARGV[1] .. sub) == 0 then
    redis.call('RPUSH', ARGV[2] .. key .. ':retry', run)
    redis.call('HDEL', KEYS[1], entries[i])
    moved = moved + 1
  end
end
return moved
"""


def scheduled_list(task_key: str) -> str:
    return f"{PREFIX}:{task_key}:scheduled"


def retry_list(task_key: str) -> str:
    return f"{PREFIX}:{task_key}:retry"


def heartbeat_key(subscription: str) -> str:
    return f"{PREFIX}:subscription:{subscription}"


def _redis() -> Any:
    # Imported late: prefect_redis reads its settings when first used.
    from prefect_redis.client import get_async_redis_client

    return get_async_redis_client()


def _task_run_model() -> Any:
    from prefect.server.schemas.core import TaskRun

    return TaskRun


async def _with_retry(call) -> Any:
    deadline = time.monotonic() + PUT_RETRY_SECONDS
    while True:
        try:
            return await call()
        except REDIS_DOWN:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


class RedisTaskQueue:
    """Methods for Prefect's TaskQueue (one instance per task key)."""

    task_key: str

    def __init__(self, task_key: str, scheduled_queue_size: int, retry_queue_size: int):
        self.task_key = task_key

    async def put(self, task_run: Any) -> None:
        run = task_run.model_dump_json()
        await _with_retry(lambda: _redis().rpush(scheduled_list(self.task_key), run))

    async def retry(self, task_run: Any) -> None:
        run = task_run.model_dump_json()
        keys = [INFLIGHT, retry_list(self.task_key)]
        await _with_retry(lambda: _redis().eval(RETRY, len(keys), *keys, str(task_run.id), run))

    async def get(self) -> Any:
        # One reader per queue, so each get() settles the run the last one handed out.
        if "_reader" not in self.__dict__:
            self._reader = RedisMultiQueue([self.task_key])
        return await self._reader.get()

    def get_nowait(self) -> Any:
        raise NotImplementedError("the Redis task queue has no synchronous get; use get()")


class RedisMultiQueue:
    """Prefect's MultiQueue: the runs of one worker subscription."""

    _last_reap = 0.0

    def __init__(self, task_keys: list[str]):
        self.task_keys = list(task_keys)
        self.subscription = uuid.uuid4().hex
        self._settle = ""  # the run handed out last, acknowledged once get() is called again
        self._fetch: asyncio.Future | None = None  # a take cut short by a timeout

    async def get(self) -> Any:
        while True:
            if self._fetch is None:
                self._fetch = asyncio.ensure_future(self._take())
            # Shielded: wait_for(get(), timeout=1) must not cancel a take whose run
            # Redis already moved to this subscription; the next get() picks it up.
            try:
                run = await asyncio.shield(self._fetch)
            except REDIS_DOWN:
                self._fetch = None
                await asyncio.sleep(0.5)
                continue
            self._fetch = None
            if run is not None:
                task_run = _task_run_model().model_validate_json(run)
                self._settle = str(task_run.id)
                return task_run
            await asyncio.sleep(POLL_SECONDS)

    async def _take(self) -> bytes | None:
        client = _redis()
        now = time.monotonic()
        if now - RedisMultiQueue._last_reap > REAP_EVERY:
            RedisMultiQueue._last_reap = now
            await client.eval(REAP, 1, INFLIGHT, heartbeat_key(""), f"{PREFIX}:")
        lists = [retry_list(k) for k in self.task_keys] + [
            scheduled_list(k) for k in self.task_keys
        ]
        keys = [heartbeat_key(self.subscription), *lists, INFLIGHT]
        args = [HEARTBEAT_SECONDS, self.subscription, self._settle, *self.task_keys * 2]
        run = await client.eval(TAKE, len(keys), *keys, *args)
        self._settle = ""
        return run


def install() -> None:
    """Give Prefect's queue classes the Redis methods, in place: core_policy and
    api/task_runs hold references to the classes themselves."""
    from prefect.server import task_queue

    for name in ("__init__", "put", "retry", "get", "get_nowait"):
        setattr(task_queue.TaskQueue, name, RedisTaskQueue.__dict__[name])
    for name in ("__init__", "get", "_take"):
        setattr(task_queue.MultiQueue, name, RedisMultiQueue.__dict__[name])
