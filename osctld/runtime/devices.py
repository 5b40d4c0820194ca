"""Device grants made real: the devices cgroup rules and the nodes in /dev.

An unprivileged container cannot mknod, and the host's own nodes are often
root's alone (0600), so osctld makes each container's nodes itself, in a
directory of its own (``<run_dir>/devices/<pool>/<ct>``), owned by the
container's root, and LXC bind-mounts them into the container's /dev at
start (``create=file`` makes the mount point). The devices cgroup decides
what may be opened: everything is denied but the basic set every system
needs and the container's grants. On a v1 node LXC writes devices.deny and
devices.allow; on a unified node the same keys under lxc.cgroup2 make it
attach a BPF device program.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
from pathlib import Path

from ..model.device import DeviceGrant
from .cgroup.layout import CgroupLayout

log = logging.getLogger(__name__)

# What any container may use: null, zero, full, random, urandom, tty,
# console, ptmx and the pseudo terminals of its own devpts.
BASE_ALLOW = tuple(DeviceGrant.parse(*spec) for spec in (
    ("c", 1, 3, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 7, "rwm"), ("c", 1, 8, "rwm"),
    ("c", 1, 9, "rwm"), ("c", 5, 0, "rwm"), ("c", 5, 1, "rwm"), ("c", 5, 2, "rwm"),
    ("c", 136, "*", "rwm"),
))
NODE_MODE = 0o666  # the cgroup decides who opens what; root inside may chmod


def merge(grants: list[DeviceGrant]) -> list[DeviceGrant]:
    """One grant per device (modes of the same device joined), first path kept."""
    out: list[DeviceGrant] = []
    for g in grants:
        for i, have in enumerate(out):
            if have.same_device(g):
                mode = "".join(c for c in "rwm" if c in have.mode + g.mode)
                out[i] = DeviceGrant(have.type, have.major, have.minor, mode, have.path or g.path)
                break
        else:
            out.append(g)
    return out


class DeviceNodes:
    def __init__(self, root: Path):
        self.root = Path(root)

    def setup(self) -> None:
        """Make the node directory; where it sits on a nodev mount (a /run
        tmpfs usually is), mount a small tmpfs of its own there. It stays
        mounted across daemon restarts: running containers' nodes live in it."""
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o711)
        if os.statvfs(self.root).f_flag & os.ST_NODEV:
            subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0711,size=1m,nosuid,noexec",
                            "osctld-devices", str(self.root)], check=True)

    def ct_dir(self, pool: str, ct_id: str) -> Path:
        return self.root / pool / ct_id

    def source(self, pool: str, ct_id: str, grant: DeviceGrant) -> Path:
        return self.ct_dir(pool, ct_id) / grant.path.removeprefix("/dev/")

    def prepare(self, pool: str, ct_id: str, grants: list[DeviceGrant], uid: int, gid: int) -> None:
        """(Re)make the container's nodes, owned by its root, in a directory
        only its root (and the host's) can enter: the nodes are 0666 for the
        container's sake, and must not be for every user of the host."""
        d = self.ct_dir(pool, ct_id)
        shutil.rmtree(d, ignore_errors=True)
        d.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
        os.chmod(d.parent, 0o711)
        d.mkdir(mode=0o700)
        os.chown(d, uid, gid)
        for g in grants:
            if not g.path:
                continue
            node = self.source(pool, ct_id, g)
            if not node.parent.exists():
                node.parent.mkdir(parents=True, mode=0o700)
                os.chown(node.parent, uid, gid)
            kind = stat.S_IFCHR if g.type == "c" else stat.S_IFBLK
            os.mknod(node, kind | NODE_MODE, os.makedev(g.major, g.minor))
            os.chmod(node, NODE_MODE)
            os.chown(node, uid, gid)

    def remove(self, pool: str, ct_id: str) -> None:
        shutil.rmtree(self.ct_dir(pool, ct_id), ignore_errors=True)

    def lxc_lines(self, layout: CgroupLayout, pool: str, ct_id: str,
                  grants: list[DeviceGrant]) -> list[str]:
        deny, allow = layout.lxc_key("devices", "devices.deny"), layout.lxc_key("devices", "devices.allow")
        lines = [f"{deny} = a"]
        lines += [f"{allow} = {g.rule}" for g in merge([*BASE_ALLOW, *grants])]
        # ``grants`` come merged: one node per device
        lines += [f"lxc.mount.entry = {self.source(pool, ct_id, g)} {g.path.lstrip('/')} "
                  f"none bind,create=file 0 0" for g in grants if g.path]
        return lines
