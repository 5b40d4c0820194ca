"""The node's cgroup layout, detected from the kernel's own tables, never
assumed, and the daemon's place in it.

A node is ``legacy`` (only v1 hierarchies), ``hybrid`` (v1 hierarchies and a
cgroup2 mount beside them, systemd's /sys/fs/cgroup/unified) or ``unified``
(one cgroup2 mount). What matters to a container's LXC config is, per
controller, which version drives it: a v1 hierarchy that has it wins (on a
hybrid node the v2 mount carries no controllers), otherwise cgroup2. LXC keys
follow: ``lxc.cgroup.<file>`` for v1, ``lxc.cgroup2.<file>`` for v2 (for
``devices`` on v2 LXC attaches a BPF program instead of writing a file).

Each hierarchy also records the daemon's own cgroup in it (from
/proc/self/cgroup): everything the daemon creates sits below that, so a
daemon started inside a memory cgroup of a service manager keeps its
containers inside that cgroup too.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from osctl.protocol import CONFLICT, INTERNAL, INVALID, OsctlError

LEGACY, HYBRID, UNIFIED = "legacy", "hybrid", "unified"
MOUNTINFO = Path("/proc/self/mountinfo")
SELF_CGROUP = Path("/proc/self/cgroup")
# v1 mount options that are no controller.
_NOT_CONTROLLERS = ("rw", "ro", "noprefix", "clone_children", "xattr", "cpuset_v2_mode")


def unescape_mount_path(path: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    return path.encode().decode("unicode_escape") if "\\" in path else path


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy."""

    version: int  # 1 or 2
    mount: Path  # where it is mounted, e.g. /sys/fs/cgroup/memory
    root: str  # the cgroup shown at the mount point (not "/" inside a cgroup namespace)
    controllers: frozenset[str]  # for v1 the mount options' controllers; for v2 those enabled
    base: str  # the daemon's own cgroup in it, e.g. /process_api/4f2a
    names: frozenset[str] = frozenset()  # v1 named hierarchies: {"name=systemd"}

    def dir(self, rel: str) -> Path:
        """The directory of cgroup ``rel``, a path below the daemon's own cgroup."""
        full = PurePosixPath(self.base) / rel
        inside = full.relative_to(self.root) if self.root != "/" else full.relative_to("/")
        return self.mount / inside


@dataclass(frozen=True)
class CgroupLayout:
    hierarchies: tuple[Hierarchy, ...] = ()

    @property
    def v1(self) -> dict[str, str]:
        """v1 controller (or "name=systemd") -> its hierarchy's mount point."""
        return {c: str(h.mount) for h in self.hierarchies if h.version == 1
                for c in sorted(h.controllers | h.names)}

    @property
    def v2(self) -> str | None:
        """The cgroup2 mount point, if any."""
        return next((str(h.mount) for h in self.hierarchies if h.version == 2), None)

    @property
    def v2_controllers(self) -> frozenset[str]:
        return next((h.controllers for h in self.hierarchies if h.version == 2), frozenset())

    @property
    def mode(self) -> str:
        if any(h.version == 1 and h.controllers for h in self.hierarchies):
            return HYBRID if self.v2 else LEGACY
        return UNIFIED if self.v2 else LEGACY

    def version(self, controller: str) -> int:
        """1 or 2: which cgroup version drives ``controller`` on this node."""
        if controller in self.v1:
            return 1
        return 2 if self.v2 else 1

    def lxc_key(self, controller: str, setting: str) -> str:
        """The LXC key that sets ``setting`` (e.g. ``devices.allow``) of ``controller``."""
        prefix = "lxc.cgroup" if self.version(controller) == 1 else "lxc.cgroup2"
        return f"{prefix}.{setting}"

    def for_controller(self, name: str) -> Hierarchy | None:
        """The hierarchy that holds controller ``name``; v1 wins on a hybrid node."""
        v1 = [h for h in self.hierarchies if h.version == 1 and name in h.controllers]
        v2 = [h for h in self.hierarchies if h.version == 2 and name in h.controllers]
        return (v1 or v2 or [None])[0]

    def public(self) -> dict:
        return {"mode": self.mode, "v1": dict(sorted(self.v1.items())), "v2": self.v2,
                "v2_controllers": sorted(self.v2_controllers), "hierarchies": [
            {"version": h.version, "mount": str(h.mount), "controllers": sorted(h.controllers),
             "base": h.base} for h in self.hierarchies]}


def _mounts(mountinfo: str) -> list[tuple[str, str, str, set[str]]]:
    """(fstype, mount point, root, super options) of each cgroup mount."""
    out = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if not sep or len(fields) < 5 or len(rfields) < 3 or rfields[0] not in ("cgroup", "cgroup2"):
            continue
        out.append((rfields[0], unescape_mount_path(fields[4]), fields[3], set(rfields[2].split(","))))
    return out


def parse(mountinfo: str, self_cgroup: str = "") -> CgroupLayout:
    """The layout from /proc/self/mountinfo and /proc/self/cgroup texts (pure,
    but for reading cgroup.controllers at the cgroup2 mount)."""
    memberships: dict[frozenset[str], str] = {}  # controllers (+names) of a line -> path
    for line in self_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            memberships[frozenset(filter(None, parts[1].split(",")))] = parts[2]
    hierarchies: list[Hierarchy] = []
    for fstype, point, root, opts in _mounts(mountinfo):
        if fstype == "cgroup2":
            if any(h.version == 2 for h in hierarchies):
                continue
            try:
                ctrls = frozenset((Path(point) / "cgroup.controllers").read_text().split())
            except OSError:
                ctrls = frozenset()
            hierarchies.append(Hierarchy(2, Path(point), root, ctrls, memberships.get(frozenset(), "/")))
            continue
        opts = {o for o in opts if o not in _NOT_CONTROLLERS and not o.startswith("release_agent=")}
        names = frozenset(o for o in opts if o.startswith("name="))
        ctrls = frozenset(opts - names)
        if not opts or any(h.version == 1 and h.controllers | h.names == opts for h in hierarchies):
            continue
        hierarchies.append(Hierarchy(1, Path(point), root, ctrls, memberships.get(frozenset(opts), "/"),
                                     names))
    return CgroupLayout(tuple(hierarchies))


def detect(mountinfo: Path = MOUNTINFO, self_cgroup: Path = SELF_CGROUP) -> CgroupLayout:
    return parse(mountinfo.read_text(), self_cgroup.read_text())


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
        if e.errno == errno.ERANGE:
            raise OsctlError(INVALID, f"the kernel refused {value} for {path.name}: "
                                      "out of its range") from None
        raise OsctlError(INTERNAL, f"cannot write {path}: {e}") from None


def make(layout: CgroupLayout, rel: str, controllers: tuple[str, ...], delegate: bool = False) -> None:
    """Create cgroup ``rel`` (and its parents) in the hierarchies of ``controllers``.

    Only those: LXC makes its own cgroups in the others, and a pre-made cpuset
    cgroup would start with no CPUs. On cgroup v2 each level hands the
    controllers down to the next; with ``delegate`` ``rel`` too hands them
    down to the children others make in it (LXC's container cgroup below a
    group, the inner one below a container's). Such a cgroup can hold no
    process itself (v2's "no internal processes").
    """
    for h in {layout.for_controller(c) for c in controllers} - {None}:
        h.dir(rel).mkdir(parents=True, exist_ok=True)
        if h.version == 2:
            enable = " ".join(f"+{c}" for c in controllers if c in h.controllers)
            level = h.dir("")
            for part in PurePosixPath(rel).parts:
                write(level / "cgroup.subtree_control", enable)
                level = level / part
            if delegate:
                write(level / "cgroup.subtree_control", enable)


def remove(layout: CgroupLayout, rel: str) -> None:
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
