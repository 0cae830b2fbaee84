"""A server process whose background service fails exits, so it is restarted whole.

Prefect 3.9.1 starts each class-based service (event persister, task-run
recorder, reactive triggers, the event and log distributors of the API
replicas, ...) as an asyncio task and never looks at the task again
(prefect/server/services/base.py `Service.running`): a service that raises is
gone without a log line while its process, its other services and its health
signals run on. Seen on a compose stack started on 2 busy cores: the reactive
triggers of both services processes failed while reading the automations at
start, so automations would never have fired.

The process exits with the service's traceback instead, as if it had crashed,
and its supervisor (native: supervisord; compose: the restart policy) starts
it again; `prefectstack drill` shows that a crashed server process loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
from contextlib import asynccontextmanager
from functools import partial

EXIT_CODE = 70  # EX_SOFTWARE: an internal error, not a stop someone asked for
logger = logging.getLogger("prefectstack.failed_services")


def _exit_on_failure(stopping: asyncio.Event, name: str, task: asyncio.Task) -> None:
    if stopping.is_set():
        return
    if task.cancelled():
        reason, error = "was cancelled", None
    elif task.exception() is not None:
        reason, error = "failed", task.exception()
    else:
        reason, error = "returned", None
    logger.critical(
        "background service %s %s; this process exits so that it is restarted whole",
        name,
        reason,
        exc_info=error,
    )
    logging.shutdown()
    os._exit(EXIT_CODE)


def install() -> None:
    from prefect.server.services.base import Service

    if getattr(Service.running, "prefectstack", False):
        return

    # Prefect's `running` with a done-callback on each service task.
    @asynccontextmanager
    async def running(cls):
        stopping = asyncio.Event()
        service_tasks = {}
        for service_class in cls.enabled_services():
            service = service_class()
            task = asyncio.create_task(service.start())
            task.add_done_callback(partial(_exit_on_failure, stopping, service.name))
            service_tasks[service] = task
        try:
            yield
        finally:
            stopping.set()
            await asyncio.gather(*[service.stop() for service in service_tasks])
            await asyncio.gather(*service_tasks.values(), return_exceptions=True)

    running.prefectstack = True
    Service.running = classmethod(running)
