"""Redis stream trimming that keeps unacknowledged messages.

prefect-redis trims each stream up to the lowest last-delivered-id of its
consumer groups (prefect_redis/messaging.py `_trim_stream_to_lowest_delivered_id`,
run every minute by every consumer). A message delivered to a consumer whose
process was killed is below that id but still pending: a surviving consumer
claims it once it has been idle for `min_idle_time` (5 s), and if a trim comes
first the claim finds the entry deleted, acknowledges it as an orphan and the
event is lost (one task run never completed in about one `drill services` in
ten). Here the trim point is also never above the oldest pending message of a
group that still has a live consumer; groups whose consumers are all idle beyond
the trim threshold are left out, as prefect-redis leaves them out, so an
abandoned group cannot stop trimming. (prefect-redis also compares stream ids as
text, so "…-10" counts as lower than "…-9"; they compare as numbers here.)
"""

from __future__ import annotations

from typing import Any


def _key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def trim_point(
    redis: Any, stream: str, idle_threshold_ms: int, latest_delivered_id: str | None
) -> str | None:
    """Where the stream may be trimmed to: the lowest of the last-delivered ids of
    the groups with a live consumer, their oldest pending ids, and the id a reader
    without a group has reached. None when nothing may be trimmed."""
    from redis.exceptions import ResponseError

    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:
        return None  # nothing published yet
    ids = [latest_delivered_id] if latest_delivered_id not in (None, "0-0") else []
    for group in groups:
        delivered = _text(group["last-delivered-id"])
        if delivered == "0-0":
            continue  # nothing consumed yet
        name = _text(group["name"])
        consumers = await redis.xinfo_consumers(stream, name)
        if consumers and all(c["idle"] > idle_threshold_ms for c in consumers):
            continue  # abandoned: must not stop trimming
        ids.append(delivered)
        summary = await redis.xpending(stream, name)
        if summary and summary.get("pending") and summary.get("min"):
            ids.append(_text(summary["min"]))
    # Stream ids compare as numbers, not as text.
    return min(ids, key=_key) if ids else None


def install() -> None:
    from prefect_redis import messaging

    if getattr(messaging._trim_stream_to_lowest_delivered_id, "prefectstack", False):
        return

    async def trim(stream_name: str, latest_delivered_id: str | None = None) -> None:
        settings = messaging.RedisMessagingConsumerSettings()
        threshold = int(settings.trim_idle_threshold.total_seconds() * 1000)
        redis = messaging.get_async_redis_client()
        point = await trim_point(redis, stream_name, threshold, latest_delivered_id)
        if point is not None:
            # MINID removes the entries below the point and keeps the point itself.
            await redis.xtrim(stream_name, minid=point, approximate=False)

    trim.prefectstack = True
    messaging._trim_stream_to_lowest_delivered_id = trim
