"""What the user keeps: head/tail and drop-ins survive a regeneration, files
with the owner-write bit cleared are left alone, and files of interfaces
that are gone are removed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from osctld.distconfig import for_distribution

from .cases import all_kinds, bridged_dhcp, routed
from .skeleton import make_rootfs

# The file that holds the routed interface, per distribution.
MAIN = {
    "debian": "etc/network/interfaces",
    "alpine": "etc/network/interfaces",
    "busybox": "etc/init.d/S40network",
    "arch": "etc/systemd/network/10-osctld-eth0.network",
    "fedora": "etc/NetworkManager/system-connections/osctld-eth0.nmconnection",
    "nixos": "etc/nixos/osctld/network.nix",
}


@pytest.mark.parametrize("dist", sorted(MAIN))
def test_read_only_file_is_left_alone(dist, tmp_path):
    make_rootfs(dist, tmp_path)
    for_distribution(dist)(tmp_path).set_network(all_kinds())
    main = tmp_path / MAIN[dist]
    main.write_text("# the user's own, keep it\n")
    main.chmod(0o444)
    for_distribution(dist)(tmp_path).set_network([bridged_dhcp()])
    assert main.read_text() == "# the user's own, keep it\n"


@pytest.mark.parametrize("dist", ["debian", "alpine"])
def test_head_and_tail_follow_the_user(dist, tmp_path):
    make_rootfs(dist, tmp_path)
    dc = for_distribution(dist)(tmp_path)
    dc.set_network([routed()])
    (tmp_path / "etc/network/interfaces.head").write_text("# head, second edition\n")
    (tmp_path / "etc/network/interfaces.tail").unlink()
    dc.set_network([routed()])
    text = (tmp_path / "etc/network/interfaces").read_text()
    assert text.index("# head, second edition") < text.index("iface lo")
    assert "tail" not in text.split("interfaces.d")[-1]
    assert text.count("auto eth0") == 1


def test_head_that_is_a_fifo_is_ignored(tmp_path):
    """A FIFO would block the daemon's read for ever."""
    (tmp_path / "etc/network").mkdir(parents=True)
    os.mkfifo(tmp_path / "etc/network/interfaces.head")
    for_distribution("debian")(tmp_path).set_network([routed()])
    assert "interfaces.head\n" not in (tmp_path / "etc/network/interfaces").read_text()


@pytest.mark.parametrize("dist,pattern", [
    ("arch", "etc/systemd/network/10-osctld-{}.network"),
    ("fedora", "etc/NetworkManager/system-connections/osctld-{}.nmconnection"),
])
def test_files_of_removed_interfaces_go(dist, pattern, tmp_path):
    make_rootfs(dist, tmp_path)
    dc = for_distribution(dist)(tmp_path)
    dc.set_network(all_kinds())
    (tmp_path / pattern.format("eth1")).chmod(0o444)
    dc.set_network([routed()])
    assert (tmp_path / pattern.format("eth0")).exists()
    assert (tmp_path / pattern.format("eth1")).exists(), "read-only: the user keeps it"
    assert not (tmp_path / pattern.format("eth2")).exists()


def test_networkd_drop_ins_and_other_files_survive(tmp_path):
    make_rootfs("arch", tmp_path)
    for_distribution("arch")(tmp_path).set_network([])
    net = tmp_path / "etc/systemd/network"
    assert (net / "10-osctld-eth0.network.d/mtu.conf").exists()
    assert (net / "eth0.network").exists()
    assert not (net / "10-osctld-eth0.network").exists()


def _enable_networkd(root: Path) -> None:
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True)
    (wants / "systemd-networkd.service").symlink_to("/usr/lib/systemd/system/systemd-networkd.service")


def test_ubuntu_without_ifupdown_uses_networkd(tmp_path):
    _enable_networkd(tmp_path)
    for_distribution("ubuntu")(tmp_path).set_network([routed()])
    assert (tmp_path / "etc/systemd/network/10-osctld-eth0.network").exists()
    assert not (tmp_path / "etc/network/interfaces").exists()


def test_debian_with_ifupdown_uses_it_even_beside_networkd(tmp_path):
    _enable_networkd(tmp_path)
    (tmp_path / "sbin").mkdir()
    (tmp_path / "sbin/ifup").write_text("")
    for_distribution("debian")(tmp_path).set_network([routed()])
    assert (tmp_path / "etc/network/interfaces").exists()
    assert not (tmp_path / "etc/systemd/network").exists()


def test_unknown_distribution_uses_networkd_only_where_enabled(tmp_path):
    for_distribution("gentoo")(tmp_path).set_network([routed()])
    assert list(tmp_path.iterdir()) == []
    _enable_networkd(tmp_path)
    for_distribution("gentoo")(tmp_path).set_network([routed()])
    assert (tmp_path / "etc/systemd/network/10-osctld-eth0.network").exists()


def test_resolved_link_gets_a_drop_in(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/resolv.conf").symlink_to("../run/systemd/resolve/stub-resolv.conf")
    for_distribution("arch")(tmp_path).set_dns(["192.0.2.53", "192.0.2.54"])
    assert os.readlink(tmp_path / "etc/resolv.conf") == "../run/systemd/resolve/stub-resolv.conf"
    assert (tmp_path / "etc/systemd/resolved.conf.d/osctld.conf").read_text().endswith(
        "[Resolve]\nDNS=192.0.2.53 192.0.2.54\n")
