"""Who the running piece of work is for, so that what waits deep below a
command (a lock held by another operation, a guest that does not shut down)
can tell its caller what it waits for, without every layer passing a
callback down.

The dispatcher sets it for each request's task; work started by the node
itself (autostart, maintenance, staged deletion) has none, and its waits
are told to nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
from contextvars import ContextVar
from dataclasses import dataclass
from typing import AsyncIterator, Callable

# A wait shorter than this goes untold: most locks and stops are quicker.
TELL_AFTER = 1.0


@dataclass(frozen=True)
class Asker:
    op: str  # "<connection>:<request id>", as op ls shows it
    verb: str  # e.g. "vm.stop"
    progress: Callable[[dict], None]

    def __str__(self) -> str:
        return f"{self.verb} (op {self.op})"


ASKER: ContextVar[Asker | None] = ContextVar("asker", default=None)


def tell(message: str, step: str = "wait") -> None:
    """A progress line for the caller, if there is one."""
    asker = ASKER.get()
    if asker is not None:
        asker.progress({"step": step, "message": message})


@contextlib.asynccontextmanager
async def telling(message: str, after: float | None = None) -> AsyncIterator[None]:
    """If the block takes longer than ``after`` seconds, the caller is told
    ``message`` (once)."""
    if ASKER.get() is None:
        yield
        return
    timer = asyncio.get_running_loop().call_later(TELL_AFTER if after is None else after, tell, message)
    try:
        yield
    finally:
        timer.cancel()
