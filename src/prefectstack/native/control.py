"""Native mode's side of a restore: which processes write to the database."""

from __future__ import annotations

from ..backups.operations import StackControl
from .stack import NativeStack


class NativeControl(StackControl):
    def __init__(self, stack: NativeStack):
        self.stack = stack

    def writers(self) -> list[str]:
        return [
            svc.name for svc in self.stack.services if svc.name.startswith(("api-", "services-"))
        ]

    def stop_writers(self) -> None:
        self.stack.stop_many(self.writers())

    def start_writers(self) -> None:
        self.stack.up()  # runs the one-shot migration before the replicas
