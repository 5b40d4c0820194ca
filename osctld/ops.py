"""The node's operations in flight, by name: ``<conn>:<request id>``.

The dispatcher (``osctld/dispatch.py``) registers each request's task here
while its command runs; ``op.ls`` lists them, ``op.cancel`` cancels one,
and shutdown cancels them all and waits for their rollbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Callable, Iterator

from osctl.protocol import NOT_FOUND, OsctlError


class Ops:
    """Operations in flight: a name for each running request's task."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task] = {}
        # Told each request's verb and seconds when it ends (the metrics).
        self.finished: list[Callable[[str, float], None]] = []

    def names(self) -> list[str]:
        return sorted(self._tasks)

    @contextlib.contextmanager
    def running(self, op: str, task: asyncio.Task, verb: str = "") -> Iterator[None]:
        self._tasks[op] = task
        began = time.monotonic()
        try:
            yield
        finally:
            self._tasks.pop(op, None)
            for tell in self.finished:
                tell(verb, time.monotonic() - began)

    def cancel(self, op: str) -> None:
        """Cancel one; its command rolls back what it did."""
        task = self._tasks.get(op)
        if task is None:
            raise OsctlError(NOT_FOUND, f"no operation {op} in flight")
        task.cancel()

    async def cancel_all(self, timeout: float) -> None:
        """Cancel every one and give them ``timeout`` seconds to roll back."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
