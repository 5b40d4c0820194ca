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
from dataclasses import dataclass, replace
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
    named their object: its ``id`` or ``name`` argument), under the name it
    had before a rename too (see ``_about``); ``account`` who acted, by its
    reference or name (``root``, ``front``); ``since`` a time (seconds
    since the epoch)."""

    id: str | None = None
    since: float | None = None
    account: str | None = None

    def wants(self, entry: dict) -> bool:
        who = entry.get("account")
        return ((self.id is None or _subject(entry) == self.id)
                and (self.since is None or entry.get("time", 0) >= self.since)
                and (self.account is None or (isinstance(who, str)
                                              and self.account in (who, who.partition("@")[0]))))


def _about(entries: list[dict], id: str) -> list[dict]:
    """The lines (oldest first) about the object named ``id`` now, under the
    names it had: read back from the newest, a rename to the name it has
    there (``ct.rename``'s ``new_id``) gives the name it had before. Lines
    about another object of the same name (before it was renamed to it,
    after it was renamed away) are not its."""
    name, out = id, []
    for e in reversed(entries):
        new_id = _args(e).get("new_id")  # a server's rename (a netif's has new_name)
        if new_id is not None and str(e.get("cmd", "")).endswith(".rename") \
                and e.get("result") == "ok":
            if new_id == name:
                name = _subject(e)
            elif _subject(e) == name:  # renamed away: what is older is another's
                break
        if _subject(e) == name:
            out.append(e)
    return out[::-1]


def _args(entry: dict) -> dict:
    args = entry.get("args")
    return args if isinstance(args, dict) else {}


def _subject(entry: dict) -> Any:
    args = _args(entry)
    return entry.get("id", args.get("id", args.get("name")))


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
    entries = sorted((e for pstate in pools for e in _lines(pstate)), key=lambda e: e.get("time", 0))
    if query.id is not None:
        entries, query = _about(entries, query.id), replace(query, id=None)
    out = [e for e in entries if query.wants(e)]
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
