"""Configuration inside a rootfs, written in each distribution's own way.

Each module holds one network configuration system; distributions map to
the one their own init uses. An unknown distribution gets OtherConfig.
"""

from __future__ import annotations

from .alpine import AlpineConfig
from .base import DistConfig
from .busybox import BusyboxConfig
from .debian import DebianConfig
from .networkd import NetworkdConfig
from .nixos import NixOSConfig
from .other import OtherConfig
from .redhat import RedHatConfig

DISTRIBUTIONS: dict[str, type[DistConfig]] = {
    "alpine": AlpineConfig,
    "arch": NetworkdConfig,
    "almalinux": RedHatConfig,
    "busybox": BusyboxConfig,
    "centos": RedHatConfig,
    "debian": DebianConfig,
    "devuan": DebianConfig,
    "fedora": RedHatConfig,
    "nixos": NixOSConfig,
    "rocky": RedHatConfig,
    "ubuntu": DebianConfig,
}


def for_distribution(name: str) -> type[DistConfig]:
    return DISTRIBUTIONS.get(name, OtherConfig)
