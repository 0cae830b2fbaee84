"""A shorter docket redelivery timeout for the background-services processes.

Prefect 3.9.1 builds its docket worker with docket's defaults
(prefect/server/api/background_workers.py: `Worker(docket)`), so a periodic
service (scheduler, late runs, ...) that a killed process was running stays
claimed by the dead consumer for docket's redelivery timeout, 5 minutes, before
a surviving process may run it again: scheduling or late marking stops that
long. Live workers renew the leases of running tasks every quarter of the
timeout, so a shorter one only makes a dead process's tasks return sooner; it
never takes a task from a live process, however long the task runs.
"""

from __future__ import annotations

import os
from datetime import timedelta

ENV = "PREFECTSTACK_DOCKET_REDELIVERY_SECONDS"


def install() -> None:
    seconds = os.environ.get(ENV)
    if not seconds:
        return
    timeout = timedelta(seconds=float(seconds))
    from docket.worker import Worker

    original = Worker.__init__
    if getattr(original, "prefectstack", False):
        return

    def __init__(self, docket, *args, **kwargs):
        kwargs.setdefault("redelivery_timeout", timeout)
        original(self, docket, *args, **kwargs)

    __init__.prefectstack = True
    Worker.__init__ = __init__
