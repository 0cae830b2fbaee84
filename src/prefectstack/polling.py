"""Readiness polls: wait for a condition instead of sleeping a guessed time."""

from __future__ import annotations

import time


def poll(fetch, done, *, timeout: float = 30.0, interval: float = 0.5):
    """Call fetch() until done(value) or timeout; return the last value."""
    deadline = time.monotonic() + timeout
    value = fetch()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(interval)
        value = fetch()
    return value
