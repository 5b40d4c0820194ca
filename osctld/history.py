"""Every state-changing command, one JSON line in its pool's ``log/history.jsonl``.

The dispatcher writes a line for each mutating command, done or failed; a
pool export writes its own before the pool leaves the node. ``history.ls``
reads the last lines back, of one pool or of all of them merged by time,
optionally only about one object, since a time or by one account.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

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


@dataclass(frozen=True)
class Query:
    """Which lines to read back: each field None for any.

    ``id`` is the object a command acted on (a line written before lines
    named their object: its ``id`` or ``name`` argument); ``account`` who
    acted, by its reference or name (``root``, ``front``); ``since`` a time
    (seconds since the epoch)."""

    id: str | None = None
    since: float | None = None
    account: str | None = None

    def wants(self, entry: dict) -> bool:
        args = entry.get("args")
        if not isinstance(args, dict):
            args = {}
        subject = entry.get("id", args.get("id", args.get("name")))
        who = entry.get("account")
        return ((self.id is None or subject == self.id)
                and (self.since is None or entry.get("time", 0) >= self.since)
                and (self.account is None or (isinstance(who, str)
                                              and self.account in (who, who.partition("@")[0]))))


def _lines(pstate: PoolState) -> Iterable[dict]:
    try:
        lines = pstate.pool.history_file.read_text().splitlines()
    except FileNotFoundError:
        return
    for line in lines:
        try:
            yield {"pool": pstate.pool.name, **json.loads(line)}
        except ValueError:
            continue  # a line cut short by a crash


def read(pools: Iterable[PoolState], limit: int, query: Query = Query()) -> list[dict]:
    """The last ``limit`` lines (all of them for 0) of ``pools`` that
    ``query`` wants, merged by time, oldest first."""
    out = sorted((e for pstate in pools for e in _lines(pstate) if query.wants(e)),
                 key=lambda e: e.get("time", 0))
    return out[-limit:] if limit > 0 else out


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
