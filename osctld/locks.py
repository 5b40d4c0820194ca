"""Per-object locks: one operation at a time on a container, a VM, a pool's
users or group tree, or a pool.

A lock may also be taken shared: every command on a container holds its
pool's lock shared, so that ``pool export`` (exclusive) waits for them all
and none starts while the pool is on its way out.

Locks are granted first come, first served, shared and exclusive alike: a
caller waits behind everyone who asked before it, even when the lock is free
for it at that moment, so no stream of later callers (a releaser that asks
again at once, a stream of readers) can keep an earlier one waiting. Callers
at the head of the queue that can share are granted together.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field
from typing import AsyncIterator

from osctl.protocol import BUSY, OsctlError

from .asker import ASKER, telling

# What a lock is held on: its kind and names, which "... is busy" shows joined by "/".
LockKey = tuple[str, ...]


def pool_key(pool: str) -> LockKey:
    """A pool: exclusive to install or export it, shared by every command within it."""
    return ("pool", pool)


def pool_import_key(path: str) -> LockKey:
    """A pool being imported from ``path``, before it has a name here."""
    return ("pool-import", path)


def ct_key(pool: str, id: str) -> LockKey:
    return ("ct", pool, id)


def vm_key(pool: str, id: str) -> LockKey:
    return ("vm", pool, id)


def flavor_key(pool: str, name: str) -> LockKey:
    return ("flavor", pool, name)


def instance_key(kind: str, pool: str, id: str) -> LockKey:
    """A container's (``kind`` "ct") or a VM's ("vm")."""
    return {"ct": ct_key, "vm": vm_key}[kind](pool, id)


def users_key(pool: str) -> LockKey:
    """A pool's users together: their ID blocks are handed out from one range."""
    return ("pool", pool, "ids")


def groups_key(pool: str) -> LockKey:
    """A pool's group tree: a new child and its parent's deletion must not cross."""
    return ("groups", pool)


@dataclass
class _Waiter:
    shared: bool
    what: str
    holder: str
    granted: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class _Entry:
    def __init__(self) -> None:
        self.readers = 0
        self.writer = False
        self.queue: deque[_Waiter] = deque()
        self.users = 0  # holders and waiters: the entry goes when none are left
        self.what = ""
        self.holder = ""  # the exclusive holder's operation, as a waiter is told it

    def free_for(self, shared: bool) -> bool:
        return not self.writer and (shared or not self.readers)

    def take(self, shared: bool, what: str, holder: str) -> None:
        if shared:
            self.readers += 1
        else:
            self.writer = True
            self.what = what
            self.holder = holder

    def give_back(self, shared: bool) -> None:
        if shared:
            self.readers -= 1
        else:
            self.writer = False
        self.grant()

    def grant(self) -> None:
        """Hand the lock to the waiters at the head of the queue it is free for."""
        while self.queue:
            w = self.queue[0]
            if not w.granted.cancelled():  # else its caller left: skip it
                if not self.free_for(w.shared):
                    return
                self.take(w.shared, w.what, w.holder)
                w.granted.set_result(None)
            self.queue.popleft()


class Locks:
    def __init__(self, timeout: float):
        self.timeout = timeout
        self._entries: dict[LockKey, _Entry] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: LockKey, what: str, shared: bool = False) -> AsyncIterator[None]:
        # Counted before the first await: an entry in use never leaves the table.
        entry = self._entries.setdefault(key, _Entry())
        entry.users += 1
        try:
            await self._acquire(entry, key, shared, what)
            try:
                yield
            finally:
                entry.give_back(shared)
        finally:
            entry.users -= 1
            if entry.users == 0:
                self._entries.pop(key, None)

    async def _acquire(self, entry: _Entry, key: LockKey, shared: bool, what: str) -> None:
        asker = ASKER.get()  # who will hold it, as those waiting behind are told
        holder = str(asker) if asker is not None else what
        if not entry.queue and entry.free_for(shared):
            entry.take(shared, what, holder)
            return
        w = _Waiter(shared, what, holder)
        entry.queue.append(w)
        name = "/".join(map(str, key))
        try:
            async with asyncio.timeout(self.timeout), \
                    telling(f"waiting for {name}: {entry.holder if entry.writer else 'others sharing it'}"):
                await w.granted
        except BaseException as e:
            if w.granted.done() and not w.granted.cancelled():
                entry.give_back(shared)  # granted as we gave up: pass it on
            else:
                with contextlib.suppress(ValueError):  # unless grant() dropped it
                    entry.queue.remove(w)
                entry.grant()  # those it held back may go
            if isinstance(e, TimeoutError):
                raise OsctlError(BUSY, f"{name} is busy with "
                                       f"{entry.what or 'another operation'}") from None
            raise
