"""vzctl's configuration format: ``/etc/vz/conf/<CTID>.conf``, ``vz.conf``
and a vzdump archive's ``etc/vzdump/vps.conf``.

Lines are ``KEY="value"`` (quotes optional without spaces); anything else is
ignored, as vzctl ignores it. Numbers follow vzctl's ``parse_ul_sfx``: a
suffix T/G/M/K (binary), P (pages) or B (bytes), fractions allowed
(``2.2G``), ``barrier:limit`` pairs, ``unlimited`` for beancounters (held
as LONG_MAX). Values are exact (Fraction), so ``2.2G`` keeps its bytes
rather than being truncated to 2G as vpsAdminOS's converter does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

PAGE = 4096  # x86_64, the only architecture OpenVZ 6 hosts ran in practice
LONG_MAX = (1 << 63) - 1
_LINE = re.compile(r"""^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(?:"([^"]*)"|'([^']*)'|(\S*))\s*(?:#.*)?$""")
_NUMBER = re.compile(r"^(\d+(?:\.\d+)?)([tgmkpb]?)$", re.I)
_MULT = {"t": 1 << 40, "g": 1 << 30, "m": 1 << 20, "k": 1 << 10, "p": PAGE, "b": 1}


class ValueError_(ValueError):
    """A value vzctl itself would refuse; the message says why."""


def parse(text: str) -> dict[str, str]:
    """The keys of a vzctl config, in file order; a later line wins, as in vzctl."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            out.pop(m.group(1), None)
            out[m.group(1)] = next(g for g in m.groups()[1:] if g is not None)
    return out


def with_veid(value: str, ctid: str) -> str:
    """``$VEID`` and ``${VEID}`` replaced, as vzctl does in VE_ROOT and VE_PRIVATE."""
    return value.replace("${VEID}", ctid).replace("$VEID", ctid)


@dataclass(frozen=True)
class Pair:
    """A ``barrier:limit`` value; ``None`` is unlimited (LONG_MAX in vzctl)."""
    barrier: int | None
    limit: int | None


def number(value: str, unit: int, suffix_ok: bool = True, unlimited_ok: bool = True) -> int | None:
    """One number in ``unit`` bytes (PAGE for page keys, 1024 for DISKSPACE,
    1 for bytes and counts), returned in bytes (counts: as counted); a
    suffixed value is bytes, turned into whole units as vzctl truncates it."""
    v = value.strip()
    if v.lower() == "unlimited":
        if not unlimited_ok:
            raise ValueError_("'unlimited' is not accepted here (vzctl refuses it too)")
        return None
    m = _NUMBER.match(v)
    if not m:
        raise ValueError_(f"{value!r} is not a number")
    n, sfx = Fraction(m.group(1)), m.group(2).lower()
    if sfx and not suffix_ok:
        raise ValueError_(f"{value!r}: a count takes no suffix")
    if not sfx and n.denominator != 1:
        raise ValueError_(f"{value!r}: a fraction needs a suffix")
    units = int(n * _MULT[sfx] / unit) if sfx else int(n)
    if units * unit >= LONG_MAX or (unit > 1 and units >= LONG_MAX // unit):
        return None  # LONG_MAX as written by vzctl for unlimited
    return units * unit


def pair(value: str, unit: int, suffix_ok: bool = True, unlimited_ok: bool = True) -> Pair:
    """``barrier:limit``, or one value for both."""
    parts = value.split(":")
    if len(parts) > 2:
        raise ValueError_(f"{value!r}: give barrier:limit")
    b = number(parts[0], unit, suffix_ok, unlimited_ok)
    lim = number(parts[-1], unit, suffix_ok, unlimited_ok)
    return Pair(b, lim)


def words(value: str) -> list[str]:
    return value.split()
