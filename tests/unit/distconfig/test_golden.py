"""Each distribution's files, written from the same three interfaces (routed
with interconnect, two IPv4 and one IPv6; bridged static; bridged DHCP),
compared byte for byte to tests/unit/distconfig/golden/ (git keeps no
modes, so the modes that matter are checked apart).

UPDATE_GOLDEN=1 rewrites the golden files from the code: review the diff.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from osctld.distconfig import DISTRIBUTIONS, for_distribution

from .cases import all_kinds
from .skeleton import SKELETONS, make_rootfs

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


MODES = {
    "busybox": {"etc/init.d/S40network": 0o755},
    "fedora": {f"etc/NetworkManager/system-connections/osctld-eth{n}.nmconnection": 0o600 for n in range(3)},
}


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def configure(dist: str, root: Path) -> None:
    dc = for_distribution(dist)(root)
    dc.set_network(all_kinds())
    dc.set_hostname("ct1.example.org")
    dc.set_dns(["192.0.2.53", "2001:db8::53"])


@pytest.mark.parametrize("dist", sorted(SKELETONS))
def test_golden(dist, tmp_path):
    make_rootfs(dist, tmp_path)
    configure(dist, tmp_path)
    golden = GOLDEN / dist
    if UPDATE:
        shutil.rmtree(golden, ignore_errors=True)
        for rel, text in tree(tmp_path).items():
            (golden / rel).parent.mkdir(parents=True, exist_ok=True)
            (golden / rel).write_text(text)
    assert tree(tmp_path) == tree(golden)
    for rel, mode in MODES.get(dist, {}).items():
        assert stat.S_IMODE((tmp_path / rel).stat().st_mode) == mode, rel


@pytest.mark.parametrize("dist", sorted(SKELETONS))
def test_regeneration_is_stable(dist, tmp_path):
    make_rootfs(dist, tmp_path)
    configure(dist, tmp_path)
    first = tree(tmp_path)
    configure(dist, tmp_path)
    assert tree(tmp_path) == first


def test_every_distribution_is_covered():
    """Each module behind a distribution name has its golden files."""
    covered = {for_distribution(d) for d in SKELETONS}
    assert set(DISTRIBUTIONS.values()) <= covered
