"""A publisher that dies mid-publish leaves no deduplication mark without its
event on the native stack's real Redis, so the client's re-send of the event
reaches the stream (prefect_plugin/publish_dedupe.py, installed as the plugin
installs it)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import uuid

from prefect_redis import messaging
from test_task_queue import redis_env  # noqa: F401 (the `redis_env` fixture)

from prefectstack.prefect_plugin import publish_dedupe

# A replica's publisher SIGKILLed right before its second Redis command, the
# earliest point at which prefect-redis has marked an event seen but not yet
# added it: whatever the publish had done by then must stand on its own.
DIES_MID_PUBLISH = textwrap.dedent("""\
    import asyncio, os, signal, sys

    from prefect_redis import messaging
    from redis.asyncio.client import Pipeline, Redis

    from prefectstack.prefect_plugin import publish_dedupe

    publish_dedupe.install()
    sent = []

    def dying(method):
        async def wrapper(*args, **kwargs):
            if sent:
                os.kill(os.getpid(), signal.SIGKILL)
            result = await method(*args, **kwargs)
            sent.append(1)
            return result
        return wrapper

    Redis.execute_command = dying(Redis.execute_command)
    Pipeline.execute = dying(Pipeline.execute)

    async def publish():
        async with messaging.Publisher(sys.argv[1], messaging.Cache(), deduplicate_by="id",
                                       batch_size=1) as publisher:
            await publisher.publish_data(b"{}", {"id": sys.argv[1]})

    asyncio.run(publish())
""")


def test_a_publisher_killed_mid_publish_does_not_drop_the_resend(redis_env):  # noqa: F811
    publish_dedupe.install()
    topic = f"dedupe-test-{uuid.uuid4().hex[:8]}"
    died = subprocess.run([sys.executable, "-c", DIES_MID_PUBLISH, topic],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert died.returncode in (0, -signal.SIGKILL), died.stderr[-2000:]

    async def resend():
        redis = messaging.get_async_redis_client()
        async with messaging.Publisher(topic, messaging.Cache(), deduplicate_by="id",
                                       batch_size=1) as publisher:  # fmt: skip
            await publisher.publish_data(b"{}", {"id": topic})  # the client's re-send
            await publisher.publish_data(b"{}", {"id": topic})  # a real duplicate
        try:
            return await redis.xlen(topic)
        finally:
            await redis.delete(topic)

    assert asyncio.run(resend()) == 1
