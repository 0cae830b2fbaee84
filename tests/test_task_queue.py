"""The Redis background-task queue's delivery rules, on the native stack's real
Redis, driven the way Prefect's websocket handler drives it (each subscription a
MultiQueue; get() again only after the worker acknowledged)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from prefect.server.schemas.core import TaskRun

from prefectstack.prefect_plugin import task_queue as tq


@pytest.fixture()
def redis_env(stack, monkeypatch):
    monkeypatch.setenv("PREFECT_REDIS_MESSAGING_HOST", "127.0.0.1")
    monkeypatch.setenv("PREFECT_REDIS_MESSAGING_PORT", stack.env["PREFECT_REDIS_MESSAGING_PORT"])
    monkeypatch.setenv("PREFECT_REDIS_MESSAGING_PASSWORD", stack.env["REDIS_PASSWORD"])
    monkeypatch.setenv("PREFECT_REDIS_MESSAGING_DB", stack.env["PREFECT_REDIS_MESSAGING_DB"])
    return f"queue-test-{uuid.uuid4().hex[:8]}"


def run_for(key: str) -> TaskRun:
    return TaskRun(id=uuid.uuid4(), task_key=key, dynamic_key="0", name="t")


def queue(key: str):
    return tq.RedisTaskQueue(key, 0, 0)


def test_runs_of_a_dead_subscription_go_back_to_the_queue_once(redis_env):
    key = redis_env

    async def scenario():
        a, b = run_for(key), run_for(key)
        await queue(key).put(a)
        await queue(key).put(b)
        dead = tq.RedisMultiQueue([key])
        assert (await dead.get()).id == a.id  # handed out, never acknowledged
        # Its replica dies: the heartbeat stops and expires.
        await tq._redis().delete(tq.heartbeat_key(dead.subscription))
        tq.RedisMultiQueue._last_reap = 0.0
        live = tq.RedisMultiQueue([key])
        got = [(await live.get()).id, (await live.get()).id]
        assert sorted(map(str, got)) == sorted([str(a.id), str(b.id)])
        assert got[0] == a.id  # requeued runs go to the retry list, read first
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(live.get(), timeout=0.5)  # nothing a third time
        # The second get() settled the run the first handed out; the third the second.
        assert not await tq._redis().hexists(tq.INFLIGHT, str(b.id))

    asyncio.run(scenario())


def test_a_failed_send_retries_the_run_and_an_acknowledged_one_is_settled(redis_env):
    key = redis_env

    async def scenario():
        a = run_for(key)
        await queue(key).put(a)
        sub = tq.RedisMultiQueue([key])
        got = await sub.get()
        assert await tq._redis().hexists(tq.INFLIGHT, str(a.id))
        await queue(key).retry(got)  # what the handler does when the send fails
        assert not await tq._redis().hexists(tq.INFLIGHT, str(a.id))
        other = tq.RedisMultiQueue([key])
        assert (await other.get()).id == a.id

    asyncio.run(scenario())


def test_a_get_cut_short_by_the_handler_timeout_loses_no_run(redis_env):
    """Prefect wraps get() in wait_for(timeout=1): a run Redis already moved to the
    subscription when the timeout struck is returned by the next get()."""
    key = redis_env

    async def scenario():
        sub = tq.RedisMultiQueue([key])
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sub.get(), timeout=0.3)
        runs = [run_for(key) for _ in range(20)]
        received = []
        for run in runs:
            await queue(key).put(run)
        while len(received) < len(runs):
            try:
                received.append((await asyncio.wait_for(sub.get(), timeout=0.001)).id)
            except TimeoutError:
                continue
        assert sorted(map(str, received)) == sorted(str(r.id) for r in runs)

    asyncio.run(scenario())
