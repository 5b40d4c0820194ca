"""The node's operations in flight, by name: ``<conn>:<request id>``.

The dispatcher (``osctld/dispatch.py``) registers each request's task here
while its command runs, with who asked for it (``root`` or an account);
``op.ls`` lists them, ``op.cancel`` cancels one (an account: only its own),
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
        self._tasks: dict[str, tuple[asyncio.Task, str]] = {}  # op -> task, who asked
        # Told each request's verb and seconds when it ends (the metrics).
        self.finished: list[Callable[[str, float], None]] = []

    def names(self, owner: str | None = None) -> list[str]:
        """Every operation, or those ``owner`` asked for."""
        return sorted(op for op, (_, who) in self._tasks.items() if owner in (None, who))

    @contextlib.contextmanager
    def running(self, op: str, task: asyncio.Task, owner: str = "root",
                verb: str = "") -> Iterator[None]:
        self._tasks[op] = (task, owner)
        began = time.monotonic()
        try:
            yield
        finally:
            self._tasks.pop(op, None)
            for tell in self.finished:
                tell(verb, time.monotonic() - began)

    def cancel(self, op: str, owner: str | None = None) -> None:
        """Cancel one (of ``owner``'s, if given: another's is not found); its
        command rolls back what it did."""
        task, who = self._tasks.get(op, (None, None))
        if task is None or owner not in (None, who):
            raise OsctlError(NOT_FOUND, f"no operation {op} in flight")
        task.cancel()

    async def cancel_all(self, timeout: float) -> None:
        """Cancel every one and give them ``timeout`` seconds to roll back."""
        tasks = [task for task, _ in self._tasks.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
