"""Every state-changing command, one JSON line in its pool's ``log/history.jsonl``.

The dispatcher writes a line for each mutating command, done or failed; a
pool export writes its own before the pool leaves the node. ``history.ls``
reads the last lines back.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from osctl.protocol import OsctlError

from .state import PoolState, Registry

log = logging.getLogger(__name__)


def append(path: Path, entry: dict[str, Any]) -> None:
    """One JSON line; O_APPEND keeps lines whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"time": time.time(), **entry}, default=str) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read(pstate: PoolState, limit: int) -> list[dict]:
    """The last ``limit`` lines of a pool (all of them for 0), oldest first."""
    try:
        lines = pstate.pool.history_file.read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines[-limit:] if limit > 0 else lines:
        try:
            out.append({"pool": pstate.pool.name, **json.loads(line)})
        except ValueError:
            continue  # a line cut short by a crash
    return out


class History:
    """The node's pools' history logs."""

    def __init__(self, registry: Registry):
        self.registry = registry

    def write(self, pool: str | None, entry: dict[str, Any]) -> None:
        """A line in ``pool``'s log (the default pool's for None). Never
        fails the command it records: a log that cannot be written is logged."""
        if pool is not None:
            pstate = self.registry.pools.get(pool)  # gone: an export wrote its own line
        else:
            try:
                pstate = self.registry.pool(None)
            except OsctlError:
                return
        if pstate is None:
            return
        try:
            append(pstate.pool.history_file, entry)
        except OSError as e:
            log.warning("cannot write history of pool %s: %s", pstate.pool.name, e)
