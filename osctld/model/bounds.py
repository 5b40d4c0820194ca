"""Ranges for every number an operator gives: what the kernel, LXC, tc and
msgpack all accept.

A value outside its range is refused where it is parsed (``invalid``, with
the value, what it is for and the range). A value already saved out of range
(by a version that had no bounds) is clamped at load with a warning instead:
refusing it there would hide the whole container, user or group, and keeping
it would make every reply that carries it impossible to encode.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, TypeVar

from osctl.protocol import INVALID, OsctlError

log = logging.getLogger(__name__)
# A value checked comes back with its own type.
Number = TypeVar("Number", int, float, Fraction)
# The largest integer msgpack and a 64-bit kernel take as a signed value.
INT64_MAX = (1 << 63) - 1


def shown(value: object, width: int = 40) -> str:
    """``repr(value)``, cut short: an error message must not echo megabytes."""
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


@dataclass(frozen=True)
class Range:
    """lo <= value <= hi; ``show`` writes a bound as the operator would."""

    lo: int | float
    hi: int | float
    show: Callable[[int | float], str] = lambda v: f"{v:g}" if isinstance(v, float) else str(v)

    def __contains__(self, value: int | float | Fraction) -> bool:
        return not (isinstance(value, float) and math.isnan(value)) and self.lo <= value <= self.hi

    def check(self, what: str, value: Number, given: object = None) -> Number:
        """``value``, or ``invalid`` naming ``what`` and the range (``given``:
        the operator's own spelling of it, shown instead)."""
        if value not in self:
            said = shown(given) if given is not None else self.show(value) \
                if isinstance(value, (int, float)) and math.isfinite(value) else str(value)
            raise OsctlError(INVALID, f"{what} {said} is out of range: "
                                      f"{self.show(self.lo)} to {self.show(self.hi)}")
        return value

    def clamp(self, where: str, value):
        """A loaded value brought into range (None and non-numbers stay as they are)."""
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value in self:
            return value
        low = (isinstance(value, float) and math.isnan(value)) or value < self.lo
        fixed = self.lo if low else self.hi
        log.warning("%s: saved value %s is out of range (%s to %s); using %s",
                    where, shown(value), self.show(self.lo), self.show(self.hi), self.show(fixed))
        return fixed
