"""Trimming of Prefect's Redis streams keeps what a killed consumer left
unacknowledged, on the native stack's real Redis, through prefect-redis's own
trim function as the plugin installs it."""

from __future__ import annotations

import asyncio
import uuid

from prefect_redis import messaging
from test_task_queue import redis_env  # noqa: F401 (the `redis_env` fixture)

from prefectstack.prefect_plugin import stream_trimming


def test_a_trim_keeps_the_messages_a_dead_consumer_did_not_acknowledge(redis_env):  # noqa: F811
    stream, group = f"trim-test-{uuid.uuid4().hex[:8]}", "recorder"
    stream_trimming.install()

    async def scenario():
        redis = messaging.get_async_redis_client()
        ids = [await redis.xadd(stream, {"n": str(i)}) for i in range(6)]
        await redis.xgroup_create(stream, group, id="0")
        # A consumer reads three messages and is killed before acknowledging them.
        await redis.xreadgroup(group, "dead", {stream: ">"}, count=3)
        # Another reads and acknowledges the rest: the group has delivered all six.
        live = await redis.xreadgroup(group, "live", {stream: ">"}, count=3)
        await redis.xack(stream, group, *[i for i, _ in live[0][1]])

        await messaging._trim_stream_to_lowest_delivered_id(stream)
        # What the live consumer's claim of the dead one's messages gets: every one
        # still there (a trimmed entry comes back as None and is dropped).
        _, claimed, *_ = await redis.xautoclaim(stream, group, "live", min_idle_time=0)
        assert [i for i, fields in claimed if fields] == ids[:3]
        await redis.xack(stream, group, *ids[:3])

        # Nothing pending any more: the stream is trimmed to the last delivered id.
        await messaging._trim_stream_to_lowest_delivered_id(stream)
        assert await redis.xlen(stream) == 1
        await redis.delete(stream)

    asyncio.run(scenario())


def test_stream_ids_compare_as_numbers():
    assert stream_trimming._key("1700000000000-9") < stream_trimming._key("1700000000000-10")
