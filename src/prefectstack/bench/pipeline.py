"""How far the event pipeline lags under the bench load: event-persist lag
(received by an API replica -> stored by the event persister) from PostgreSQL
over the events received during the load, and the consumer-group backlog as the
stack's Prometheus sampled it (the Prefect exporter is scraped every 30 s)."""

from __future__ import annotations

from datetime import datetime

import httpx

from ..backups.pg import PgClient

LAG_SQL = """
SELECT count(*),
       coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), 0),
       coalesce(percentile_cont(0.95) WITHIN GROUP (ORDER BY lag), 0),
       coalesce(max(lag), 0)
FROM (SELECT extract(epoch FROM recorded - received) AS lag
      FROM events
      WHERE occurred >= timestamptz '{start}' - interval '5 minutes'
        AND received BETWEEN timestamptz '{start}' AND timestamptz '{end}') AS received_in_window
"""
BACKLOG = {
    "oldest_undelivered_age_s_max": "prefectstack_stream_group_oldest_undelivered_age_seconds",
    "oldest_pending_age_s_max": "prefectstack_stream_group_oldest_pending_age_seconds",
}


def persist_lag(pg: PgClient, db: str, start: datetime, end: datetime) -> dict:
    sql = LAG_SQL.format(start=start.isoformat(), end=end.isoformat())
    count, p50, p95, worst = pg.query(db, sql).strip().split("|")
    return {
        "events": int(count),
        "p50_s": round(float(p50), 3),
        "p95_s": round(float(p95), 3),
        "max_s": round(float(worst), 3),
    }


def backlog(prometheus_url: str, window_s: int) -> dict:
    """Worst backlog per figure over the last WINDOW_S seconds, any stream and group."""
    figures = {}
    with httpx.Client(base_url=prometheus_url, timeout=10) as http:
        for name, metric in BACKLOG.items():
            body = http.get(
                "/api/v1/query", params={"query": f"max(max_over_time({metric}[{window_s}s]))"}
            ).json()
            result = body.get("data", {}).get("result", [])
            figures[name] = round(float(result[0]["value"][1]), 3) if result else None
    return figures
