"""A publish that did not reach Redis forgets its deduplication marks.

prefect-redis's publisher marks each event id as seen (for 5 minutes) before it
adds the batch to the stream, and forgets the marks when adding fails with an
Exception (prefect_redis/messaging.py `Publisher._publish_current_batch`). A
cancellation is not an Exception: a replica stopping in the middle of a publish
(a rollout, asyncio.run's cancellation of what is left) keeps the marks with
nothing on the stream, and the client's re-send of the event after it
reconnects is then dropped as a duplicate, so neither the event persister nor
the task-run recorder ever sees it. Here any interruption forgets the marks of
the messages not yet added.
"""

from __future__ import annotations


def install() -> None:
    import orjson
    from prefect_redis import messaging

    if getattr(messaging.Publisher._publish_current_batch, "prefectstack", False):
        return

    async def _publish_current_batch(self) -> None:
        if not self._batch:
            return
        if self.deduplicate_by:
            to_publish = await self.cache.without_duplicates(self.deduplicate_by, self._batch)
        else:
            to_publish = list(self._batch)
        self._batch.clear()
        added = 0
        try:
            for message in to_publish:
                await self._client.xadd(
                    self.stream,
                    {"data": message.data, "attributes": orjson.dumps(message.attributes)},
                )
                added += 1
        except BaseException:
            if self.deduplicate_by:
                await self.cache.forget_duplicates(self.deduplicate_by, to_publish[added:])
            raise

    _publish_current_batch.prefectstack = True
    messaging.Publisher._publish_current_batch = _publish_current_batch
