"""The node's cgroup layout, detected from the kernel's own tables, and the
daemon's place in it.

A node may be legacy (cgroup v1 only), hybrid (v1 controllers and an empty
v2 mount beside them) or unified (v2 only). Each controller lives in exactly
one hierarchy; this module says which, where it is mounted and under which
path the daemon itself runs in it, so that everything the daemon creates sits
below its own cgroup (a daemon started inside a memory cgroup of a service
manager keeps its containers inside that cgroup too).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from osctl.protocol import CONFLICT, INTERNAL, OsctlError

LEGACY, HYBRID, UNIFIED = "legacy", "hybrid", "unified"


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy."""

    version: int  # 1 or 2
    mount: Path  # where it is mounted, e.g. /sys/fs/cgroup/memory
    root: str  # the cgroup shown at the mount point (not "/" inside a cgroup namespace)
    controllers: frozenset[str]  # for v1 the mount options' controllers; for v2 those enabled
    base: str  # the daemon's own cgroup in it, e.g. /process_api/4f2a

    def dir(self, rel: str) -> Path:
        """The directory of cgroup ``rel``, a path below the daemon's own cgroup."""
        full = PurePosixPath(self.base) / rel
        inside = full.relative_to(self.root) if self.root != "/" else full.relative_to("/")
        return self.mount / inside


@dataclass(frozen=True)
class Layout:
    kind: str  # LEGACY, HYBRID or UNIFIED
    hierarchies: tuple[Hierarchy, ...]

    def for_controller(self, name: str) -> Hierarchy | None:
        """The hierarchy that holds controller ``name``; v1 wins on a hybrid node."""
        v1 = [h for h in self.hierarchies if h.version == 1 and name in h.controllers]
        v2 = [h for h in self.hierarchies if h.version == 2 and name in h.controllers]
        return (v1 or v2 or [None])[0]

    def lxc_prefix(self, controller: str) -> str:
        """The LXC key family that sets a file of ``controller``: v1 or v2."""
        h = self.for_controller(controller)
        return "lxc.cgroup2" if h is not None and h.version == 2 else "lxc.cgroup"

    def public(self) -> dict:
        return {"layout": self.kind, "hierarchies": [
            {"version": h.version, "mount": str(h.mount), "controllers": sorted(h.controllers),
             "base": h.base} for h in self.hierarchies]}


def _mounts(mountinfo: str) -> list[tuple[str, str, str, set[str]]]:
    """(fstype, mount point, root, super options) of each cgroup mount."""
    out = []
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3 or rfields[0] not in ("cgroup", "cgroup2"):
            continue
        point = fields[4].replace("\\040", " ")
        out.append((rfields[0], point, fields[3], set(rfields[2].split(","))))
    return out


def parse(mountinfo: str, self_cgroup: str) -> Layout:
    """The layout from /proc/self/mountinfo and /proc/self/cgroup texts."""
    memberships: dict[str, str] = {}  # controller set key -> path; "" for v2
    for line in self_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            memberships[parts[1]] = parts[2]
    seen: set[str] = set()
    hierarchies = []
    for fstype, point, root, opts in _mounts(mountinfo):
        if fstype == "cgroup2":
            if "v2" in seen:
                continue
            seen.add("v2")
            try:
                ctrls = frozenset((Path(point) / "cgroup.controllers").read_text().split())
            except OSError:
                ctrls = frozenset()
            hierarchies.append(Hierarchy(2, Path(point), root, ctrls, memberships.get("", "/")))
            continue
        ctrls = frozenset(o for o in opts if o not in ("rw", "ro") and "=" not in o
                          and o not in ("noprefix", "clone_children", "xattr", "cpuset_v2_mode"))
        named = sorted(o for o in opts if o.startswith("name="))
        key = ",".join(sorted(ctrls) + named)
        if not key or key in seen:
            continue
        seen.add(key)
        base = next((p for k, p in memberships.items() if k and set(k.split(",")) == set(key.split(","))),
                    "/")
        hierarchies.append(Hierarchy(1, Path(point), root, ctrls, base))
    v1 = any(h.version == 1 and h.controllers for h in hierarchies)
    v2 = any(h.version == 2 for h in hierarchies)
    kind = HYBRID if v1 and v2 else LEGACY if v1 else UNIFIED
    return Layout(kind, tuple(hierarchies))


def detect() -> Layout:
    return parse(Path("/proc/self/mountinfo").read_text(), Path("/proc/self/cgroup").read_text())


# --- files of a cgroup ---------------------------------------------------------------

def read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return None


def write(path: Path, value: str) -> None:
    """Write one cgroup file; the kernel's refusal becomes a clear error."""
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as e:
        if e.errno in (errno.EBUSY, errno.EINVAL):
            raise OsctlError(CONFLICT, f"the kernel refused {value} for {path.name} "
                                       f"({os.strerror(e.errno)}): in use above it?") from None
        raise OsctlError(INTERNAL, f"cannot write {path}: {e}") from None


def make(layout: Layout, rel: str, controllers: tuple[str, ...]) -> None:
    """Create cgroup ``rel`` (and its parents) in the hierarchies of ``controllers``.

    Only those: LXC makes its own cgroups in the others, and a pre-made cpuset
    cgroup would start with no CPUs.
    """
    for h in {layout.for_controller(c) for c in controllers} - {None}:
        h.dir(rel).mkdir(parents=True, exist_ok=True)
        if h.version == 2:  # v2: each level hands the controllers down to the next
            enable = " ".join(f"+{c}" for c in controllers if c in h.controllers)
            level = h.dir("")
            for part in PurePosixPath(rel).parts:
                write(level / "cgroup.subtree_control", enable)
                level = level / part


def remove(layout: Layout, rel: str) -> None:
    """Remove cgroup ``rel`` and everything below it, in every hierarchy.

    A cgroup that still holds a process stays (rmdir says EBUSY); the caller
    has made sure none does.
    """
    for h in layout.hierarchies:
        top = h.dir(rel)
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
            try:
                os.rmdir(dirpath)
            except FileNotFoundError:
                pass
            except OSError as e:
                if e.errno != errno.EBUSY:
                    raise
