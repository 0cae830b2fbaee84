"""The Prefect releases prefectstack runs, and the one uv.lock bundles.

A release is verified once prefectstack's Prefect plugin (prefect_plugin/: it
replaces behaviour read in prefect/server/task_queue.py, api/task_runs.py,
api/background_workers.py and services/base.py) and deploy/prefect/prefect.env
were read against its source. 3.9.0 differs from 3.9.1 in none of those places
that the plugin touches, and has every setting prefect.env sets.
"""

from __future__ import annotations

from ..paths import REPO_ROOT
from .requirements import locked

VERIFIED_PREFECT = ("3.9.0", "3.9.1")


def bundled() -> str:
    """The release uv.lock pins: what `prefectstack upgrade` goes to by default."""
    return locked("prefect", REPO_ROOT)


def key(version: str) -> tuple[int, ...]:
    """Sort key of a release number (the verified ones are plain X.Y.Z)."""
    return tuple(int(part) for part in version.split("."))
