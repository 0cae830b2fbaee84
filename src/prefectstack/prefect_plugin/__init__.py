"""prefectstack's Prefect plugin: installs the Redis background-task queue, a
shorter docket redelivery timeout, an exit on a failed background service,
stream trimming that keeps unacknowledged messages, events-out subscriptions
that replay the recent event stream and publishes that add and mark each event
in one atomic step, in Prefect's server processes.

Prefect 3.9.1 has no setting for its task queue (the other pluggable backends,
e.g. PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE, are module paths), so the queue
is swapped through Prefect's own extension point: a `prefect.plugins` entry
point whose startup hook runs when a process imports prefect, enabled for the
server processes by deploy/prefect/prefect.env (PREFECT_PLUGINS_*). Strict mode
there makes a failed install stop the server instead of running it with the
per-replica queue.
"""

from __future__ import annotations

from prefect.plugins import register_hook

from ..releases.versions import VERIFIED_PREFECT


@register_hook
def setup_environment(*, ctx):
    if ctx.prefect_version not in VERIFIED_PREFECT:
        raise RuntimeError(
            f"prefectstack's Prefect plugin is verified on Prefect {', '.join(VERIFIED_PREFECT)}, "
            f"not {ctx.prefect_version}: re-read the files named in "
            "prefectstack/releases/versions.py and extend VERIFIED_PREFECT"
        )
    from . import (
        docket_redelivery,
        events_replay,
        failed_services,
        publish_dedupe,
        stream_trimming,
        task_queue,
    )

    task_queue.install()
    docket_redelivery.install()
    failed_services.install()
    stream_trimming.install()
    events_replay.install()
    publish_dedupe.install()
    return None
