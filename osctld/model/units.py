"""Sizes and rates as operators write them: 512M, 10G, 1.5T, 100M (bits per
second), or plain numbers.

Parsed exactly (no float: 400 digits must be "out of range", not an
overflow, and 1.1G must not lose a byte to rounding): a size that is no
whole number of bytes is refused rather than rounded down.
"""

from __future__ import annotations

import re
from fractions import Fraction

from osctl.protocol import INVALID, OsctlError

from .bounds import Range, shown

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$", re.I)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:bit|bps)?\s*$", re.I)
_RATE_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
# More digits than any value in range has: refused before they are turned into a number.
_MAX_DIGITS = 40


def format_size(n: int | float) -> str:
    """The largest unit that writes ``n`` exactly: 4M, 1024P, 1536 (bytes)."""
    for unit, factor in sorted(_UNITS.items(), key=lambda kv: -kv[1]):
        if factor > 1 and n and n % factor == 0:
            return f"{int(n // factor)}{unit.upper()}"
    return f"{n:g}" if isinstance(n, float) else str(n)


def format_rate(n: int | float) -> str:
    for unit, factor in sorted(_RATE_UNITS.items(), key=lambda kv: -kv[1]):
        if factor > 1 and n >= factor:
            return f"{n / factor:.4g}{unit.upper()}bit/s"
    return f"{n:g}bit/s"


# Sizes: memory, swap, disk, quotas, VM memory and disk, pool images. 1 EiB
# is more than any of them can be, and leaves room for sums (memory + swap,
# a user's quota usage) in a signed 64-bit value.
SIZE_RANGE = Range(0, 1 << 60, format_size)
# Shaping rates: tbf's rate is 32 bits of bytes per second (pyroute2 sends
# no 64-bit rate), and below 1 kbit/s its burst of 16 KiB takes more time
# to send than its 32-bit buffer field holds.
RATE_RANGE = Range(1000, 8 * ((1 << 32) - 1), format_rate)


def _exact(value: object, pattern: re.Pattern, units: dict, kind: str, example: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise OsctlError(INVALID, f"invalid {kind} {shown(value)}: use e.g. {example}")
    if isinstance(value, int):
        return Fraction(value)
    m = pattern.match(value)
    if not m:
        raise OsctlError(INVALID, f"invalid {kind} {shown(value)}: use e.g. {example}")
    if len(m.group(1)) > _MAX_DIGITS:
        raise OsctlError(INVALID, f"{kind} {shown(value)} is out of range")
    return Fraction(m.group(1)) * units[m.group(2).lower()]


def parse_size(value: object, what: str = "size", bound: Range = SIZE_RANGE) -> int:
    """Bytes, within ``bound``; ``what`` names the value in errors (e.g. "memory limit")."""
    n = _exact(value, _SIZE, _UNITS, what, "512M, 10G or bytes")
    if n.denominator != 1:
        raise OsctlError(INVALID, f"{what} {shown(value)} is not a whole number of bytes "
                                  f"({float(n):.1f}): give it in a smaller unit")
    return bound.check(what, int(n), value)


def parse_rate(value: object, what: str = "rate") -> int:
    """Bits per second, as links are sold: 100M is 100 000 000 bit/s; 0 is no limit."""
    n = _exact(value, _RATE, _RATE_UNITS, what, "100M, 1G or bits per second")
    if n == 0:
        return 0
    return int(RATE_RANGE.check(what, n, value))  # a fraction of a bit/s is below tc's precision
