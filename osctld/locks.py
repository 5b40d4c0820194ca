"""Per-object locks: one operation at a time on a container, user or pool."""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator, Hashable

from osctl.protocol import BUSY, OsctlError


class Locks:
    def __init__(self, timeout: float):
        self.timeout = timeout
        self._locks: dict[Hashable, asyncio.Lock] = {}
        self._holders: dict[Hashable, str] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable, what: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            await asyncio.wait_for(lock.acquire(), self.timeout)
        except asyncio.TimeoutError:
            holder = self._holders.get(key, "another operation")
            raise OsctlError(BUSY, f"{'/'.join(map(str, key))} is busy with {holder}") from None
        self._holders[key] = what
        try:
            yield
        finally:
            self._holders.pop(key, None)
            lock.release()
            if not lock.locked() and not getattr(lock, "_waiters", None):
                self._locks.pop(key, None)
