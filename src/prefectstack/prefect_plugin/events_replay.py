"""Events-out subscriptions that miss nothing across a reconnect.

A websocket client of /api/events/out that reconnects (its replica stopped in a
rollout or an upgrade) asks again from the time it first started: Prefect
subscribes it to the replica's live feed, then sends what the database holds
(prefect/server/api/events.py `stream_workspace_events_out`). An event received
before the new subscription but not yet stored by the event persister (which
batches, and in a rollout also moves between services processes) is in
neither, so the subscriber never sees it (one `Completed` event in some
rollouts under load). Such an event is still in the Redis stream the persister
reads. Here a subscription first replays the stream's recent entries that match
its filter (bounded in time and count) and the live feed then skips what the
replay sent; Prefect's endpoint skips, in both, what its backfill already sent.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from typing import Any

REPLAY_SECONDS = 120  # far beyond the persister's lag, even across a rollout
REPLAY_MAX = 2000  # newest entries read per subscription, whatever their type


async def recent_events(filter: Any) -> list[Any]:
    """The events of the last REPLAY_SECONDS in the Redis stream that FILTER
    admits, oldest first."""
    from prefect.server.events.schemas.events import ReceivedEvent
    from prefect_redis import messaging

    redis = messaging.get_async_redis_client()
    since = f"{int((time.time() - REPLAY_SECONDS) * 1000)}-0"
    entries = await redis.xrevrange(
        messaging._stream_key("events"), max="+", min=since, count=REPLAY_MAX
    )
    events = []
    for _, fields in reversed(entries):
        data = fields.get(b"data", fields.get("data"))
        if data is None:
            continue
        event = ReceivedEvent.model_validate_json(data)
        if not filter.excludes(event):
            events.append(event)
    return events


def install() -> None:
    from prefect.logging import get_logger
    from prefect.server.events import stream

    if getattr(stream.events, "prefectstack", False):
        return
    logger = get_logger(__name__)

    @asynccontextmanager
    async def events(filter):
        async with stream.subscribed(filter) as queue:
            try:
                replayed = await recent_events(filter)
            except Exception as exc:  # the live feed and the backfill still work
                logger.warning("events-out replay from Redis failed: %s", exc)
                replayed = []
            sent = {event.id for event in replayed}

            async def consume():
                for event in replayed:
                    yield event
                while True:
                    # As Prefect's own consume(): a None now and then lets the
                    # endpoint notice a closed websocket.
                    try:
                        event = await asyncio.wait_for(queue.get(), timeout=1)
                    except TimeoutError:
                        yield None
                        continue
                    if event.id not in sent:
                        yield event

            yield consume()

    events.prefectstack = True
    stream.events = events
