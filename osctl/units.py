"""Values as a person reads and types them: 2G, 164M, 100M/s, 2d 4h, 3h 2m ago.

The daemon sends exact numbers (bytes, bits per second, seconds since the
epoch); tables show them rounded to what a person compares at a glance, and
``-p``, JSON, YAML and CSV keep them exact. Which value is which kind goes
by its key (``KINDS``): one table for every command, so that ``memory`` reads
the same in ``ct ls``, ``vm show`` and ``user show``. A command that brings
new keys adds them with ``KINDS.update(...)`` where it is defined.

Kept free of click and of anything slow to import: every osctl call loads it.
"""

from __future__ import annotations

import re
import time

SIZE, RATE, TIME, DURATION, AGO = "size", "rate", "time", "duration", "ago"

KINDS: dict[str, str] = {
    # bytes
    **dict.fromkeys(("memory", "swap", "disk", "rss", "size", "used", "free", "running_memory",
                     "rx_bytes", "tx_bytes", "memory_used", "disk_used"), SIZE),
    # bits per second
    **dict.fromkeys(("max_tx", "max_rx"), RATE),
    # seconds since the epoch
    **dict.fromkeys(("time", "created", "started"), TIME),
    # seconds since the epoch, shown as how long ago
    "since": AGO,
    # seconds
    "uptime": DURATION,
}

_SIZE_UNITS = "KMGTPE"
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtpe]?)(?:i?b)?$", re.I)


def format_size(n: int | float) -> str:
    """Bytes in the largest binary unit that leaves a number of at least 1,
    with one decimal below 10 where it is not whole: 2G, 1.5G, 164M, 512."""
    value, unit = float(n), ""
    for u in _SIZE_UNITS:
        if abs(value) < 1024:
            break
        value, unit = value / 1024, u
    if not unit:
        return str(int(n)) if float(n).is_integer() else f"{n:.1f}"
    return _short(value) + unit


def format_rate(bits_per_second: int | float) -> str:
    """Bits per second in decimal units, as shaping rates are typed: 100M/s, 1.5G/s."""
    value, unit = float(bits_per_second), ""
    for u in "kMGT":
        if abs(value) < 1000:
            break
        value, unit = value / 1000, u
    return _short(value) + unit + "/s"


def _short(value: float) -> str:
    rounded = round(value, 1)
    if rounded.is_integer() or abs(value) >= 10:
        return str(int(round(value)))
    return f"{rounded:.1f}"


def format_duration(seconds: int | float) -> str:
    """A span in its largest unit and the next one down: 2d 4h, 3h 2m, 5m 3s, 42s."""
    left = int(seconds)
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    for (unit, size), (next_unit, next_size) in zip(units, units[1:]):
        if left >= size:
            rest = left % size // next_size
            return f"{left // size}{unit}" + (f" {rest}{next_unit}" if rest else "")
    return f"{left}s"


def format_time(epoch: int | float) -> str:
    """An ISO date and time in the node's own time zone."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def format_ago(epoch: int | float, now: float | None = None) -> str:
    """How long ago: 3h 2m ago (a time in the future: in 5m)."""
    delta = (time.time() if now is None else now) - epoch
    return f"{format_duration(delta)} ago" if delta >= 0 else f"in {format_duration(-delta)}"


FORMATTERS = {SIZE: format_size, RATE: format_rate, TIME: format_time,
              DURATION: format_duration, AGO: format_ago}


def human(key: str | None, value: object) -> object:
    """``value`` as a table shows it, if ``key`` names a kind of number; else unchanged."""
    kind = KINDS.get(key or "")
    if kind is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    return FORMATTERS[kind](value)


def parse_size(text: str) -> int:
    """Bytes from what a person types: 512M, 1.5G, 10GiB, 4096. ValueError if not."""
    m = _SIZE.match(text.strip())
    if not m:
        raise ValueError(f"invalid size {text!r}: use e.g. 512M, 10G")
    number, unit = m.groups()
    factor = 1024 ** (_SIZE_UNITS.index(unit.upper()) + 1) if unit else 1
    whole, _, frac = number.partition(".")
    # Exact: 1.1G is 1181116006.4 bytes: refused, not rounded.
    num = int(whole + frac) * factor
    den = 10 ** len(frac)
    if num % den:
        raise ValueError(f"size {text!r} is not a whole number of bytes")
    return num // den


def is_grow(text: str) -> bool:
    """``+10G``: add to what is there rather than set."""
    return text.strip().startswith("+")


def grown(current: int | None, text: str) -> int:
    """The value ``+SIZE`` asks for over ``current`` bytes (none counts as 0)."""
    return (current or 0) + parse_size(text.strip()[1:])
