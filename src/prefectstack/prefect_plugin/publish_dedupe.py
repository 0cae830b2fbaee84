"""A publish marks an event as seen and adds it to the stream in one atomic step.

prefect-redis's publisher marks each message id as seen (SET NX, 5 minutes) in
one round trip and adds the batch to the stream in later ones
(prefect_redis/messaging.py `Publisher._publish_current_batch`), forgetting the
marks only when adding fails with an Exception. A replica that stops in between
(a cancellation during a rollout, or a SIGKILL) leaves marks with nothing on the
stream, and the client's re-send of the event after it reconnects is dropped as
a duplicate: neither the event persister nor the task-run recorder ever sees it.
Here one Lua script, which Redis runs atomically, adds each message not seen
before and then marks it: a publisher stopped at any point has done both for a
message or neither.
"""

from __future__ import annotations

# KEYS: the stream, then the mark of each message that has the deduplication
# attribute. ARGV: the marks' lifetime in seconds, then per message: whether it
# has a mark ("1"/"0"), its data, its attributes. Added before marked, so a failed
# add leaves no mark. Returns how many messages were added.
SCRIPT = """
local ttl = ARGV[1]
local mark = 2
local added = 0
for i = 2, #ARGV, 3 do
  local key = nil
  if ARGV[i] == '1' then
    key = KEYS[mark]
    mark = mark + 1
  end
  if key == nil or redis.call('EXISTS', key) == 0 then
    redis.call('XADD', KEYS[1], '*', 'data', ARGV[i + 1], 'attributes', ARGV[i + 2])
    if key ~= nil then
      redis.call('SET', key, '1', 'EX', ttl)
    end
    added = added + 1
  end
end
return added
"""


def install() -> None:
    import orjson
    from prefect_redis import messaging

    original = messaging.Publisher._publish_current_batch
    if getattr(original, "prefectstack", False):
        return

    async def _publish_current_batch(self) -> None:
        if not self._batch or not self.deduplicate_by:
            return await original(self)
        if not isinstance(self.cache, messaging.Cache):  # not prefect-redis's marks
            return await original(self)
        batch = list(self._batch)
        self._batch.clear()
        keys, args = [self.stream], [int(messaging.MESSAGE_DEDUPLICATION_LOOKBACK.total_seconds())]
        for message in batch:
            value = (message.attributes or {}).get(self.deduplicate_by)
            if value is not None:
                keys.append(messaging._deduplication_key(self.cache.topic, value))
            else:
                messaging.logger.warning(
                    "Message is missing deduplication attribute %r", self.deduplicate_by
                )
            args += ["1" if value is not None else "0", message.data,
                     orjson.dumps(message.attributes)]  # fmt: skip
        if not hasattr(self, "_prefectstack_script"):
            self._prefectstack_script = self._client.register_script(SCRIPT)
        await self._prefectstack_script(keys=keys, args=args)

    _publish_current_batch.prefectstack = True
    messaging.Publisher._publish_current_batch = _publish_current_batch
