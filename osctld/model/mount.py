"""A bind mount of a node's directory (or file) into a container."""

from __future__ import annotations

import posixpath
import re
from dataclasses import asdict, dataclass

from osctl.protocol import INVALID, OsctlError

from .bounds import shown
from .naming import check_path

# The kernel's own filesystems inside: LXC mounts them; a bind over them
# would hide what the container needs (or, on /dev, what it must not have).
RESERVED = ("/proc", "/sys", "/dev")
# Paths as they are typed and shown: no whitespace, no escapes.
PLAIN = re.compile(r"^[^\s\\]+$")
MAX_MOUNTS = 64


def _clean(what: str, path: str) -> str:
    check_path(what, path)
    if not path.startswith("/") or not PLAIN.match(path):
        raise OsctlError(INVALID, f"{what} {shown(path)}: give an absolute path without "
                                  "spaces or backslashes")
    return posixpath.normpath(path)


def check_paths(src: str, dst: str) -> tuple[str, str]:
    """SRC on the node and DST inside, normalised; DST within the
    container's tree and not over its kernel filesystems. (A symlink on
    DST's way is the container's: it is resolved inside its root.)"""
    src, dst = _clean("source", src), _clean("destination", dst)
    if dst == "/" or any(dst == r or dst.startswith(r + "/") for r in RESERVED):
        raise OsctlError(INVALID, f"destination {dst}: not /, nor below {', '.join(RESERVED)}")
    return src, dst


@dataclass
class Mount:
    src: str  # on the node
    dst: str  # inside the container
    ro: bool = False
    # Mapped as the rootfs is (the node's 0 is the container's root); false
    # where the pool chowns or the source's filesystem cannot be idmapped.
    idmapped: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Mount":
        return cls(src=d["src"], dst=d["dst"], ro=bool(d.get("ro")), idmapped=bool(d.get("idmapped")))
