"""Per-object locks: one operation at a time on a container, user or pool.

A lock may also be taken shared: every command on a container holds its
pool's lock shared, so that ``pool export`` (exclusive) waits for them all
and none starts while the pool is on its way out.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator, Hashable

from osctl.protocol import BUSY, OsctlError


class _Entry:
    def __init__(self) -> None:
        self.cond = asyncio.Condition()
        self.readers = 0
        self.writer = False
        self.writers_waiting = 0
        self.users = 0  # holders and waiters: the entry goes when none are left
        self.what = ""

    def free_for(self, shared: bool) -> bool:
        if shared:  # writers waiting go first, or a stream of readers starves them
            return not self.writer and not self.writers_waiting
        return not self.writer and not self.readers


class Locks:
    def __init__(self, timeout: float):
        self.timeout = timeout
        self._entries: dict[Hashable, _Entry] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable, what: str, shared: bool = False) -> AsyncIterator[None]:
        # Counted before the first await: an entry in use never leaves the table.
        entry = self._entries.setdefault(key, _Entry())
        entry.users += 1
        try:
            await self._acquire(entry, key, shared, what)
            try:
                yield
            finally:
                async with entry.cond:
                    if shared:
                        entry.readers -= 1
                    else:
                        entry.writer = False
                    entry.cond.notify_all()
        finally:
            entry.users -= 1
            if entry.users == 0:
                self._entries.pop(key, None)

    async def _acquire(self, entry: _Entry, key: Hashable, shared: bool, what: str) -> None:
        async with entry.cond:
            if not shared:
                entry.writers_waiting += 1
            try:
                await asyncio.wait_for(entry.cond.wait_for(lambda: entry.free_for(shared)), self.timeout)
            except asyncio.TimeoutError:
                raise OsctlError(BUSY, f"{'/'.join(map(str, key))} is busy with "
                                       f"{entry.what or 'another operation'}") from None
            finally:
                if not shared:
                    entry.writers_waiting -= 1
                    entry.cond.notify_all()  # readers held back by this writer may go
            if shared:
                entry.readers += 1
            else:
                entry.writer = True
                entry.what = what
