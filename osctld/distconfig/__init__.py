"""Configuration inside a rootfs, written in each distribution's own way."""

from __future__ import annotations

from .base import DistConfig
from .busybox import BusyboxConfig
from .debian import DebianConfig

DISTRIBUTIONS: dict[str, type[DistConfig]] = {
    "busybox": BusyboxConfig,
    "debian": DebianConfig,
}


def for_distribution(name: str) -> type[DistConfig]:
    return DISTRIBUTIONS.get(name, DistConfig)
