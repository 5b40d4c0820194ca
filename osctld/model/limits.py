"""Resource limits of a container or a group: what the cgroups enforce.

Every limit is optional: ``None`` means no limit of its own (a container or
group is then bound only by the groups above it).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from osctl.protocol import INVALID, OsctlError

from .units import parse_size

# The names operators type (osctl ct set ID cpu-limit 1.5) -> field names.
LIMIT_NAMES = {"cpu-limit": "cpu_limit", "memory": "memory", "swap": "swap", "pids": "pids"}
UNSET_WORDS = ("none", "unlimited", "max")


@dataclass
class Limits:
    cpu_limit: float | None = None  # cores; a quota over the CPU period
    memory: int | None = None  # bytes
    swap: int | None = None  # bytes beyond memory
    pids: int | None = None  # processes and threads

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, d: dict | None) -> "Limits":
        return cls(**{f.name: (d or {}).get(f.name) for f in fields(cls)})

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
    field = LIMIT_NAMES.get(name, name)
    if field not in LIMIT_NAMES.values():
        raise OsctlError(INVALID, f"unknown limit {name!r}: use {', '.join(LIMIT_NAMES)}")
    if value is None or (isinstance(value, str) and value.strip().lower() in UNSET_WORDS):
        return field, None
    if field == "cpu_limit":
        try:
            cores = float(value)
        except (TypeError, ValueError):
            raise OsctlError(INVALID, f"invalid cpu-limit {value!r}: give cores, e.g. 0.5 or 2") from None
        if not 0.01 <= cores <= max_cpus:
            raise OsctlError(INVALID, f"cpu-limit {cores:g} is out of range: 0.01 to {max_cpus:g} "
                                      "cores (the node's max_cpu_limit)")
        return field, round(cores, 2)
    if field == "pids":
        try:
            n = int(value)
        except (TypeError, ValueError):
            raise OsctlError(INVALID, f"invalid pids limit {value!r}: give a number") from None
        if n < 1:
            raise OsctlError(INVALID, f"pids limit must be at least 1, got {n}")
        return field, n
    size = parse_size(value)
    if field == "memory" and size < 4 << 20:
        raise OsctlError(INVALID, f"memory limit {size} is too small: 4M at least")
    return field, size
