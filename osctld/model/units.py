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
