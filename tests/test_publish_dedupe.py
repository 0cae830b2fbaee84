"""A cancelled publish on the native stack's real Redis leaves no deduplication
mark behind, so the client's re-send of the event reaches the stream
(prefect_plugin/publish_dedupe.py, installed as the plugin installs it)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from prefect_redis import messaging
from test_task_queue import redis_env  # noqa: F401 (the `redis_env` fixture)

from prefectstack.prefect_plugin import publish_dedupe


def test_a_cancelled_publish_does_not_drop_the_resend(redis_env):  # noqa: F811
    publish_dedupe.install()
    topic = f"dedupe-test-{uuid.uuid4().hex[:8]}"

    async def scenario():
        redis = messaging.get_async_redis_client()
        publisher = messaging.Publisher(topic, messaging.Cache(), deduplicate_by="id",
                                        batch_size=1)  # fmt: skip
        async with publisher:
            add = publisher._client.xadd

            async def stopped(*args, **kwargs):
                raise asyncio.CancelledError  # the replica stops mid-publish

            publisher._client.xadd = stopped
            try:
                with pytest.raises(asyncio.CancelledError):
                    await publisher.publish_data(b"{}", {"id": topic})
            finally:
                publisher._client.xadd = add
            await publisher.publish_data(b"{}", {"id": topic})  # the client's re-send
            await publisher.publish_data(b"{}", {"id": topic})  # a real duplicate
        assert await redis.xlen(topic) == 1
        await redis.delete(topic)

    asyncio.run(scenario())
