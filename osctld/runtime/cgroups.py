"""The node's cgroup layout, detected from /proc/self/mountinfo, never assumed.

A node is ``legacy`` (only v1 hierarchies), ``hybrid`` (v1 hierarchies and a
cgroup2 mount beside them, systemd's /sys/fs/cgroup/unified) or ``unified``
(one cgroup2 mount). What matters to a container's LXC config is, per
controller, which version drives it: a v1 hierarchy that has it wins (on a
hybrid node the v2 mount carries no controllers), otherwise cgroup2. LXC keys
follow: ``lxc.cgroup.<file>`` for v1, ``lxc.cgroup2.<file>`` for v2 (for
``devices`` on v2 LXC attaches a BPF program instead of writing a file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

LEGACY, HYBRID, UNIFIED = "legacy", "hybrid", "unified"
MOUNTINFO = Path("/proc/self/mountinfo")


def _unescape(path: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    return path.encode().decode("unicode_escape") if "\\" in path else path


@dataclass
class CgroupLayout:
    # v1 controller (or "name=systemd") -> its hierarchy's mount point
    v1: dict[str, str] = field(default_factory=dict)
    # the cgroup2 mount point, if any, and the controllers it offers
    v2: str | None = None
    v2_controllers: frozenset[str] = frozenset()

    @property
    def mode(self) -> str:
        real_v1 = [c for c in self.v1 if not c.startswith("name=")]
        if real_v1:
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

    def public(self) -> dict:
        return {"mode": self.mode, "v1": dict(sorted(self.v1.items())), "v2": self.v2,
                "v2_controllers": sorted(self.v2_controllers)}


def parse_mountinfo(text: str) -> CgroupLayout:
    """The layout a mountinfo text describes (pure, for tests)."""
    layout = CgroupLayout()
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        fields_ = pre.split()
        fstype, _source, opts = (post.split() + ["", ""])[:3]
        mountpoint = _unescape(fields_[4])
        if fstype == "cgroup2" and layout.v2 is None:
            layout.v2 = mountpoint
        elif fstype == "cgroup":
            for opt in opts.split(","):
                if opt in ("rw", "ro") or opt.startswith(("release_agent=", "xattr", "clone_children",
                                                          "noprefix", "cpuset_v2_mode")):
                    continue
                layout.v1.setdefault(opt, mountpoint)
    return layout


def detect(mountinfo: Path = MOUNTINFO) -> CgroupLayout:
    layout = parse_mountinfo(mountinfo.read_text())
    if layout.v2:
        try:
            ctrls = (Path(layout.v2) / "cgroup.controllers").read_text().split()
        except OSError:
            ctrls = []
        layout.v2_controllers = frozenset(ctrls)
    return layout
