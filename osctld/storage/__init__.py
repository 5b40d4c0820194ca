"""Storage backends behind one interface: dir, btrfs, zfs."""

from __future__ import annotations

from osctl.protocol import INVALID, OsctlError

from .base import Backend
from .btrfs import BtrfsBackend
from .dir import DirBackend
from .zfs import ZfsBackend

BACKENDS: dict[str, type[Backend]] = {"dir": DirBackend, "btrfs": BtrfsBackend, "zfs": ZfsBackend}


def backend_for(pool) -> Backend:
    try:
        return BACKENDS[pool.backend](pool)
    except KeyError:
        raise OsctlError(INVALID, f"unknown storage backend {pool.backend!r}") from None
