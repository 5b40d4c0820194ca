"""Sizes as operators write them: 512M, 10G, 1.5T, or plain bytes."""

from __future__ import annotations

import re

from osctl.protocol import INVALID, OsctlError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$", re.I)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(value: str | int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise OsctlError(INVALID, f"invalid size {value}: negative")
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise OsctlError(INVALID, f"invalid size {value!r}: use e.g. 512M, 10G or bytes")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:bit|bps)?\s*$", re.I)
_RATE_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_rate(value: str | int) -> int:
    """Bits per second, as links are sold: 100M is 100 000 000 bit/s; 0 is no limit."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    m = _RATE.match(str(value))
    if not m:
        raise OsctlError(INVALID, f"invalid rate {value!r}: use e.g. 100M, 1G or bits per second")
    return int(float(m.group(1)) * _RATE_UNITS[m.group(2).lower()])
