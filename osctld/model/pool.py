"""A pool: where data and configuration of users and containers live."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from osctl.protocol import INVALID, OsctlError

from .attrs import loaded as loaded_attrs
from .naming import check_name

BACKENDS = ("dir", "btrfs", "zfs")
# How a rootfs stored with UID 0 on disk is shown to a container.
IDMAP_MOUNT = "idmapped"  # lxc.rootfs.options = idmap=container
IDMAP_CHOWN = "chown"  # the fallback: files are chowned into the user's range
# A VM's tar pass is received beside the last one, which waits under the second while they swap.
PASS_SWAP = (".new", ".old")
# The ends of the names of a VM's pass directories in ``<pool>/vm`` (``.<id>`` before them).
VM_PASSES = (".send", ".recv", *(".recv" + s for s in PASS_SWAP))


@dataclass
class Pool:
    name: str
    backend: str
    path: Path
    image: Path | None = None  # btrfs on a loop file that the daemon mounts, a zpool on a file
    dataset: str | None = None  # zfs: the dataset the pool is, on this node (POOL/PATH)
    idmap: str = IDMAP_MOUNT
    attrs: dict[str, str] = field(default_factory=dict)  # frontends' metadata (model/attrs.py)

    def __post_init__(self) -> None:
        check_name("pool", self.name)
        if self.backend not in BACKENDS:
            raise OsctlError(INVALID, f"unknown backend {self.backend!r}: use {', '.join(BACKENDS)}")
        self.path = Path(self.path)
        if not self.path.is_absolute():
            raise OsctlError(INVALID, f"pool path must be absolute, got {self.path}")
        if self.image is not None:
            self.image = Path(self.image)
        if self.dataset is not None:
            check_dataset(self.dataset)
        self.attrs = loaded_attrs(self.attrs, f"pool {self.name}")

    # Layout inside the pool (DESIGN.md "On disk").
    @property
    def conf_dir(self) -> Path:
        return self.path / "conf"

    @property
    def log_dir(self) -> Path:
        return self.path / "log"

    @property
    def history_file(self) -> Path:
        return self.log_dir / "history.jsonl"

    def ct_dir(self, ct_id: str) -> Path:
        return self.path / "ct" / ct_id

    def rootfs(self, ct_id: str) -> Path:
        return self.ct_dir(ct_id) / "rootfs"

    def vm_dir(self, vm_id: str) -> Path:
        """A VM's disk, kernel and initramfs."""
        return self.path / "vm" / vm_id

    def sent(self, kind: str, id: str) -> Path:
        """The read-only snapshots the source of a send or replica keeps of
        its passes (btrfs): in a container's directory; beside a VM's, whose
        directory is the subvolume snapshotted."""
        return self.ct_dir(id) / "send" if kind == "ct" else self.path / "vm" / f".{id}.send"

    def received(self, kind: str, id: str) -> Path:
        """What the destination of a send or replica received: its
        snapshots (btrfs), or the tree (rsync) or files (a VM's tar)."""
        return self.ct_dir(id) / "recv" if kind == "ct" else self.path / "vm" / f".{id}.recv"

    def passes(self, kind: str, id: str) -> tuple[Path, ...]:
        """Every directory a send's or replica's passes of instance ``id``
        are kept in, at either end: a VM's tar pass is written beside the
        last (``.new``), which waits as ``.old`` while they swap."""
        recv = self.received(kind, id)
        return (self.sent(kind, id), recv, *(recv.with_name(recv.name + s) for s in PASS_SWAP))

    def template_dir(self, name: str) -> Path:
        return self.path / "tpl" / name

    def to_dict(self) -> dict:
        """What pool.yml holds: enough to import the pool on another node."""
        return {"name": self.name, "backend": self.backend, "idmap": self.idmap,
                "attrs": dict(self.attrs)}

    def node_entry(self) -> dict:
        """What the node's pool list holds: where this node mounts the pool."""
        d = {"name": self.name, "path": str(self.path)}
        if self.image:
            d["image"] = str(self.image)
        if self.dataset:
            d["dataset"] = self.dataset
        return d


DATASET = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]*(/[A-Za-z0-9][A-Za-z0-9_.:-]*)*$")


def vm_of_passes(name: str) -> str | None:
    """The VM whose send's or replica's passes an entry of ``<pool>/vm``
    named ``name`` holds (``Pool.passes``); None if it is no such entry."""
    if not name.startswith("."):
        return None
    for end in VM_PASSES:  # no name ends in two of them
        if name.endswith(end) and len(name) > len(end) + 1:
            try:  # a name osctld could have given, no more
                return check_name("id", name[1:-len(end)])
            except OsctlError:
                return None
    return None


def check_dataset(name: str) -> str:
    """A zfs dataset's name as ``--dataset`` takes it: zpool/path, no snapshot."""
    if not isinstance(name, str) or len(name) > 200 or not DATASET.match(name):
        raise OsctlError(INVALID, f"invalid zfs dataset {name!r}: give POOL or POOL/PATH "
                                  "(letters, digits, _ . : -)")
    return name
