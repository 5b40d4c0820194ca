"""Resource limits of a container or a group: what the cgroups enforce.

Every limit is optional: ``None`` means no limit of its own (a container or
group is then bound only by the groups above it).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from osctl.protocol import INVALID, OsctlError

from .bounds import Range, shown
from .units import SIZE_RANGE, format_size, parse_size

# On the wire a limit has its field's name, as ct.show reports it; the CLI
# turns what operators type (--cpu-limit) into it. The spelling the wire had
# before (cpu-limit) is accepted for one release.
LIMIT_NAMES = ("cpu_limit", "memory", "swap", "pids")
OLD_NAMES = {"cpu-limit": "cpu_limit"}
UNSET_WORDS = ("none", "unlimited", "max")
# pids.max takes 0 to PID_MAX_LIMIT (4194304 on 64-bit); 0 would stop every fork.
PIDS_RANGE = Range(1, 1 << 22)
# Less memory than this and not even a container's init starts.
MEMORY_RANGE = Range(4 << 20, SIZE_RANGE.hi, format_size)
RANGES = {"memory": MEMORY_RANGE, "swap": SIZE_RANGE, "pids": PIDS_RANGE}


@dataclass
class Limits:
    cpu_limit: float | None = None  # cores; a quota over the CPU period
    memory: int | None = None  # bytes
    swap: int | None = None  # bytes beyond memory
    pids: int | None = None  # processes and threads

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, d: dict | None, where: str = "limits") -> "Limits":
        """As saved; a value out of range (saved before there were bounds) is
        clamped, with a warning naming ``where``."""
        d = d or {}
        return cls(**{f.name: RANGES[f.name].clamp(f"{where}: {f.name}", d.get(f.name))
                      if f.name in RANGES else d.get(f.name) for f in fields(cls)})

    def updated(self, changes: dict, max_cpus: float) -> "Limits":
        """A copy with operator-given limits (``none`` lifts one), checked."""
        out = Limits(**self.to_dict())
        for name, value in changes.items():
            field, parsed = parse_limit(str(name), value, max_cpus)
            setattr(out, field, parsed)
        return out

    def tightest(self, other: "Limits") -> "Limits":
        """Per field, the smaller of the two set values: what binds below both."""
        def pick(a, b):
            return b if a is None else a if b is None else min(a, b)
        return Limits(**{f.name: pick(getattr(self, f.name), getattr(other, f.name))
                         for f in fields(self)})


def parse_limit(name: str, value: str | int | float | None, max_cpus: float):
    """One operator-given limit, checked; ``None`` (or none/unlimited) removes it."""
    field = OLD_NAMES.get(name, name)
    if field not in LIMIT_NAMES:
        raise OsctlError(INVALID, f"unknown limit {shown(name)}: use {', '.join(LIMIT_NAMES)}")
    if value is None or (isinstance(value, str) and value.strip().lower() in UNSET_WORDS):
        return field, None
    if field == "cpu_limit":
        try:
            cores = float(value)
        except (TypeError, ValueError, OverflowError):
            raise OsctlError(INVALID, f"invalid cpu_limit {shown(value)}: give cores, "
                                      "e.g. 0.5 or 2") from None
        if not 0.01 <= cores <= max_cpus:
            raise OsctlError(INVALID, f"cpu_limit {cores:g} is out of range: 0.01 to {max_cpus:g} "
                                      "cores (the node's max_cpu_limit)")
        return field, round(cores, 2)
    if field == "pids":
        try:
            n = int(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
        except ValueError:
            n = None
        if n is None:
            raise OsctlError(INVALID, f"invalid pids limit {shown(value)}: give a number")
        return field, PIDS_RANGE.check("pids limit", n, value)
    return field, parse_size(value, f"{field} limit", RANGES[field])
