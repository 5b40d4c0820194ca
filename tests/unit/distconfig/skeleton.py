"""Minimal rootfs skeletons: the files a distribution's rootfs has before
osctld writes into it, where they change what is written."""

from __future__ import annotations

from pathlib import Path

HOSTS = "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n"
NIX_CONFIGURATION = """\
{ config, pkgs, ... }:

{
  boot.isContainer = true;
  services.openssh.enable = true;
}
"""

SKELETONS: dict[str, dict[str, str]] = {
    "debian": {
        "etc/hosts": HOSTS,
        "etc/network/interfaces.head": "# the user's head\nallow-hotplug eth9\n",
        "etc/network/interfaces.tail": "# the user's tail\niface eth9 inet manual\n",
        "etc/network/interfaces.d/local": "# the user's own\n",
    },
    "alpine": {
        "etc/hosts": HOSTS,
        "etc/network/interfaces.head": "# the user's head\n",
        "etc/network/interfaces.tail": "# the user's tail\n",
    },
    "busybox": {"etc/hosts": HOSTS, "etc/init.d/rcS": "#!/bin/sh\n"},
    "arch": {
        "etc/hosts": HOSTS,
        "etc/systemd/network/10-osctld-eth0.network.d/mtu.conf": "[Link]\nMTUBytes=1400\n",
        "etc/systemd/network/eth0.network": "[Match]\nName=eth0\n\n[Network]\nDHCP=yes\n",
    },
    "fedora": {
        "etc/hosts": HOSTS,
        "etc/NetworkManager/system-connections/mine.nmconnection": "[connection]\nid=mine\n",
    },
    "nixos": {"etc/nixos/configuration.nix": NIX_CONFIGURATION},
}


def make_rootfs(dist: str, root: Path) -> None:
    for rel, text in SKELETONS[dist].items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
