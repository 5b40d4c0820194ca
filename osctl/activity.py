"""What happened on a node, as one line a person reads: command events and
history entries as ``ct.set web1 memory=2G``, the verb, the object it acted
on and the arguments it was given; other events as ``key=value`` pairs.

Kept apart from the CLI so that a frontend embedding the client shows the
same lines.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

from .output import cell

# What an event line shows in its own place, not among its key=value pairs.
_PLACED = ("type", "time", "cmd", "object", "id", "args", "phase")


_AGO = re.compile(r"(\d+)([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def since(text: str, now: float | None = None) -> float:
    """A time given as a person types it: a span back from now (``90s``,
    ``30m``, ``2h``, ``1d``, ``1w``, or ``2h30m``) or an ISO 8601 date or
    time (without a zone: this node's). ValueError for anything else."""
    spans = _AGO.findall(text)
    if spans and "".join(n + u for n, u in spans) == text:
        return (time.time() if now is None else now) - sum(int(n) * _UNIT[u] for n, u in spans)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither a span back (30m, 2h, 1d) nor an ISO date "
                         f"(2026-11-30, 2026-11-30T08:00)") from None
    return when.timestamp()  # a naive one: the local time zone


def arguments(args: dict, subject: Any = None) -> list[str]:
    """``key=value`` for each argument given, a map's entries as its own
    (``limits={'memory': '2G'}`` reads ``memory=2G``); the one that names the
    subject is left out (it stands after the verb)."""
    out = []
    for key, value in args.items():
        if value is None or (subject is not None and value == subject):
            continue
        if isinstance(value, dict):
            out.extend(arguments(value))
        else:
            out.append(f"{key}={cell(value)}")
    return out


def command_text(entry: dict) -> str:
    """A command event or history entry as ``cmd id key=value...``."""
    subject = entry.get("id")
    words = [entry.get("cmd", "?")]
    if subject is not None:
        words.append(str(subject))
    return " ".join(words + arguments(entry.get("args") or {}, subject))


def event_line(ev: dict) -> str:
    """One event for a terminal: the time, the type, then what it says (a
    command: its phase and ``command_text``)."""
    stamp = time.strftime("%H:%M:%S", time.localtime(ev.get("time", time.time())))
    kind = ev.get("type", "?")
    rest = {k: v for k, v in ev.items() if k not in _PLACED and v is not None}
    if kind == "command":
        head = f"{ev.get('phase', '?'):<6} {command_text(ev)}"
    else:
        head = " ".join(w for w in (ev.get("object"), ev.get("id")) if w is not None)
    pairs = [f"{k}={cell(v)}" for k, v in rest.items()]
    return " ".join(w for w in (f"{stamp} {kind:<11}", head, *pairs) if w)
