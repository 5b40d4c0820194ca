"""Roll back a multi-step operation when a later step fails.

    async with Undo() as undo:
        make_a(); undo.push(remove_a)
        make_b(); undo.push(remove_b)

On an exception (or cancellation) the pushed steps run newest first, each
guarded so that one failing clean-up does not stop the others, and the
original exception goes on. On success they are dropped.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, Callable

log = logging.getLogger(__name__)


class Undo:
    def __init__(self) -> None:
        self.steps: list[tuple[Callable[..., Any], tuple]] = []

    def push(self, fn: Callable[..., Any], *args: Any) -> None:
        self.steps.append((fn, args))

    def commit(self) -> None:
        """What is done so far stays, whatever follows: its steps are dropped."""
        self.steps.clear()

    async def rollback(self) -> None:
        while self.steps:
            fn, args = self.steps.pop()
            try:
                result = fn(*args)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("rollback step %s%r failed", getattr(fn, "__name__", fn), args)

    async def __aenter__(self) -> "Undo":
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            # Shielded: a second cancellation (another op.cancel, shutdown)
            # must not stop a rollback half way.
            await asyncio.shield(self.rollback())
        self.steps.clear()
