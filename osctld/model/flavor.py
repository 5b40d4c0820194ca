"""Flavors: named sizes (cores, memory, disk, swap) that servers are created
from and changed to, as a provider's plans are.

For a VM a flavor's values are its cores, memory and disk. For a container
cores become its ``cpu_limit``, memory and swap its limits, and the disk its
rootfs quota where the pool's backend has quotas. A server records the
flavor it was last given (``flavor``); its own values are what binds it, so a
flavor changed or deleted later changes no server.
"""

from __future__ import annotations

from dataclasses import dataclass

from .naming import check_name


@dataclass
class Flavor:
    name: str
    pool: str
    cores: int
    memory: int  # bytes
    disk: int  # bytes
    swap: int | None = None  # bytes beyond memory; containers only

    PERSISTED = ("name", "cores", "memory", "disk", "swap")

    def __post_init__(self) -> None:
        check_name("flavor", self.name)

    def ct_limits(self) -> dict:
        """A container's limits, by their names on the wire."""
        out = {"cpu_limit": self.cores, "memory": self.memory}
        return out if self.swap is None else {**out, "swap": self.swap}

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.PERSISTED}

    @classmethod
    def from_dict(cls, d: dict, pool: str) -> "Flavor":
        return cls(pool=pool, **{k: d[k] for k in cls.PERSISTED if k in d})

    def public(self) -> dict:
        return {**self.to_dict(), "pool": self.pool}
