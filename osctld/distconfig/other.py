"""A distribution osctld has no module for: hostname, hosts and resolv.conf
as the base writes them, and the network for systemd-networkd where the
rootfs enables it; otherwise the network configuration is left to the user."""

from __future__ import annotations

from .base import DistConfig
from .netconfig import IfaceConfig
from .networkd import uses_networkd, write_networkd


class OtherConfig(DistConfig):
    def set_network(self, ifaces: list[IfaceConfig]) -> None:
        if uses_networkd(self):
            write_networkd(self, ifaces)
