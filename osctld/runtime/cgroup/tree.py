"""Limits as cgroup files: where each container and group sits in the cgroup
tree, what its limits write there, and what is in force when read back.

The tree, below the daemon's own cgroup in each hierarchy:

    <root>/pool.<pool>                      the pool's root group "/"
    <root>/pool.<pool>/group.prod/group.web group "/prod/web"
    <group cgroup>/ct.<id>                  a container: its limits
    <group cgroup>/ct.<id>/ns               where its init runs (its cgroup namespace)
    <group cgroup>/vm.<id>                  a VM's QEMU process, while it runs
    <root>/monitor/<id>@<pool>              LXC's monitor process, outside the groups

Limits sit on ``ct.<id>``, which the container cannot see or write; a group's
limits bind every container and VM below it because cgroups charge each level.
"""

from __future__ import annotations

from dataclasses import dataclass

from osctl.protocol import INVALID, OsctlError

from ...model.group import ancestors
from ...model.limits import Limits
from . import layout as cgroups
from .layout import CgroupLayout

CPU_PERIOD = 100_000  # microseconds
UNLIMITED = 1 << 62  # v1 memory files read 9223372036854771712 when unlimited
INNER = "ns"
CONTROLLERS = ("cpu", "memory", "pids")
# Made for groups too: where their CPU time is counted on a v1 node.
ACCOUNTING = ("cpuacct",)
# A shell that writes its own PID to each cgroup.procs file it is given (up
# to "--"), then becomes the program that follows: the program runs in those
# cgroups from its first instruction, so all it allocates is charged there.
# (The daemon cannot do it between fork and exec: it has threads.)
_JOIN = 'for f do shift; [ "$f" = -- ] && break; echo $$ > "$f" || exit 1; done; exec "$@"'


@dataclass(frozen=True)
class Setting:
    controller: str
    file: str
    value: str


def _v1(limits: Limits, live: bool) -> list[Setting]:
    out = []
    if limits.cpu_limit is not None or live:
        quota = -1 if limits.cpu_limit is None else int(limits.cpu_limit * CPU_PERIOD)
        out += [Setting("cpu", "cpu.cfs_period_us", str(CPU_PERIOD)),
                Setting("cpu", "cpu.cfs_quota_us", str(quota))]
    if live:  # memsw may never be below memory: open it up, set memory, then close it
        out.append(Setting("memory", "memory.memsw.limit_in_bytes", "-1"))
    if limits.memory is not None or live:
        out.append(Setting("memory", "memory.limit_in_bytes",
                           str(-1 if limits.memory is None else limits.memory)))
    if limits.memory is not None and limits.swap is not None:
        out.append(Setting("memory", "memory.memsw.limit_in_bytes", str(limits.memory + limits.swap)))
    if limits.pids is not None or live:
        out.append(Setting("pids", "pids.max", "max" if limits.pids is None else str(limits.pids)))
    return out


def _v2(limits: Limits, live: bool) -> list[Setting]:
    out = []
    wanted = [
        ("cpu", "cpu.max", None if limits.cpu_limit is None
         else f"{int(limits.cpu_limit * CPU_PERIOD)} {CPU_PERIOD}", f"max {CPU_PERIOD}"),
        ("memory", "memory.max", limits.memory, "max"),
        ("memory", "memory.swap.max", limits.swap, "max"),
        ("pids", "pids.max", limits.pids, "max"),
    ]
    for ctrl, file, value, unset in wanted:
        if value is not None or live:
            out.append(Setting(ctrl, file, unset if value is None else str(value)))
    return out


class CgroupTree:
    """The daemon's cgroup tree on this node: names, limits, read-back."""

    def __init__(self, layout: CgroupLayout, root: str):
        self.layout = layout
        self.root = root

    # --- names ------------------------------------------------------------------

    def group(self, pool: str, path: str) -> str:
        parts = [p for p in path.split("/") if p]
        return "/".join([self.root, f"pool.{pool}", *(f"group.{p}" for p in parts)])

    def ct(self, pool: str, group: str, ct_id: str) -> str:
        return f"{self.group(pool, group)}/ct.{ct_id}"

    def vm(self, pool: str, group: str, vm_id: str) -> str:
        return f"{self.group(pool, group)}/vm.{vm_id}"

    def monitor(self, pool: str, ct_id: str) -> str:
        return f"{self.root}/monitor/{ct_id}@{pool}"  # "@" is in no name: no two collide

    def daemon(self) -> str:
        return f"{self.root}/daemon"

    # --- the daemon's own place -----------------------------------------------------

    def settle(self, pid: int) -> list[int]:
        """Move the daemon (``pid``) out of its own cgroup into ``<root>/daemon``
        in each cgroup2 hierarchy that drives a controller of the tree.

        cgroup v2 lets no cgroup both hold processes and hand controllers
        down to its children ("no internal processes"), and the daemon's own
        cgroup must hand them down to ``<root>``: so the daemon, and what it
        starts after (lxcfs, the statfs proxy), live in a leaf of the tree.
        A systemd unit with ``Delegate=yes`` gives the daemon a cgroup to
        itself. v1 has no such rule: there the daemon stays where it is.
        Returns the PIDs other than the daemon's still in its old cgroup:
        they keep containers from getting limits (the caller says so)."""
        others: set[int] = set()
        for h in {self.layout.for_controller(c) for c in CONTROLLERS} - {None}:
            if h.version != 2:
                continue
            leaf = h.dir(self.daemon())
            leaf.mkdir(parents=True, exist_ok=True)
            cgroups.write(leaf / "cgroup.procs", str(pid))
            others |= {int(p) for p in (cgroups.read(h.dir("") / "cgroup.procs") or "").split()}
        return sorted(others)

    # --- limits -------------------------------------------------------------------

    def settings(self, limits: Limits, live: bool = False) -> list[Setting]:
        """The files to write, v1 or v2 per controller as the node has it.

        ``live``: also the files of unset limits (to lift a limit that was
        there); at start a fresh cgroup has none.
        """
        out = []
        for version, wanted in ((1, _v1(limits, live)), (2, _v2(limits, live))):
            for s in wanted:
                h = self.layout.for_controller(s.controller)
                if h is not None and h.version == version and (
                        self.swap_accounting or "swap" not in s.file and "memsw" not in s.file):
                    out.append(s)
        return out

    def check(self, limits: Limits) -> None:
        """Refuse limits this node's cgroups cannot express."""
        if limits.swap is None:
            return
        if not self.swap_accounting:
            raise OsctlError(INVALID, "this node does not account swap per cgroup "
                                      "(cgroup v1 without swapaccount=1): no swap limits")
        memory = self.layout.for_controller("memory")
        if limits.memory is None and memory.version == 1:
            raise OsctlError(INVALID, "swap is limited together with memory on this node "
                                      "(cgroup v1): set a memory limit too")

    @property
    def swap_accounting(self) -> bool:
        """Whether the kernel accounts swap per cgroup (v1: swapaccount=1)."""
        h = self.layout.for_controller("memory")
        if h is None:
            return False
        return h.version == 2 or (h.mount / "memory.memsw.limit_in_bytes").exists()

    def lxc_lines(self, pool: str, group: str, ct_id: str, limits: Limits) -> list[str]:
        """LXC keys that place the container in its group and set its limits at start.

        Paths relative to lxc-start's own cgroup (the daemon's) where the
        daemon's cgroup is the tree's base; on a unified node the daemon
        lives in a leaf of the tree (``settle``), so there they are absolute:
        from the hierarchy's root, through the base."""
        unified = next((h for h in self.layout.hierarchies if h.version == 2), None)
        if self.layout.mode == cgroups.UNIFIED and unified is not None:
            top = str(unified.dir("").relative_to(unified.mount))
            lines, where = [], lambda rel: f"{top}/{rel}" if top != "." else rel
        else:
            lines, where = ["lxc.cgroup.relative = 1"], lambda rel: rel
        lines += [
            f"lxc.cgroup.dir.container = {where(self.ct(pool, group, ct_id))}",
            f"lxc.cgroup.dir.container.inner = {INNER}",
            f"lxc.cgroup.dir.monitor = {where(self.monitor(pool, ct_id))}",
            f"lxc.cgroup.dir.monitor.pivot = {where(self.root + '/monitor')}",
        ]
        lines += [f"{self.layout.lxc_key(s.controller, s.file)} = {s.value}"
                  for s in self.settings(limits)]
        return lines

    def apply_groups(self, pstate, path: str) -> None:
        """Make group ``path`` of ``pstate``'s pool and those above it, each
        with its limits (they may have gone with a reboot)."""
        for p in reversed(ancestors(path)):
            self.apply(self.group(pstate.pool.name, p), pstate.groups[p].limits)

    def make(self, rel: str, delegate: bool = False) -> None:
        """Create cgroup ``rel`` where groups and their limits are (see ``apply``);
        ``delegate``: one that holds no process, only cgroups (layout.make)."""
        cgroups.make(self.layout, rel, CONTROLLERS + ACCOUNTING, delegate)

    def run_in(self, rel: str, argv: list[str]) -> list[str]:
        """``argv`` made to run in cgroup ``rel`` (made before) in each of those hierarchies."""
        hierarchies = {self.layout.for_controller(c) for c in CONTROLLERS + ACCOUNTING} - {None}
        procs = sorted(str(h.dir(rel) / "cgroup.procs") for h in hierarchies)
        return ["/bin/sh", "-c", _JOIN, "osctld-join", *procs, "--", *argv]

    def apply(self, rel: str, limits: Limits) -> None:
        """Write ``limits`` to cgroup ``rel`` now (made if missing), lifting unset
        ones. ``rel`` is a group's or a container's: its processes are in the
        cgroups below it (a container's in its inner one), so it delegates."""
        self.make(rel, delegate=True)
        for s in self.settings(limits, live=True):
            h = self.layout.for_controller(s.controller)
            cgroups.write(h.dir(rel) / s.file, s.value)

    def apply_running(self, rel: str, limits: Limits) -> None:
        """A running container's limits on its cgroup ``rel`` and the CPU
        quota repeated on the inner one (``apply_cpu_view``). A v1 kernel
        refuses a quota below one of a child's: the inner copy is lifted
        first, so that a lower limit can be written above it."""
        self.apply_cpu_view(rel, Limits())
        self.apply(rel, limits)
        self.apply_cpu_view(rel, limits)

    def apply_cpu_view(self, rel: str, limits: Limits) -> None:
        """Repeat the CPU quota on the container's inner cgroup (``rel``/ns).

        The outer cgroup's quota is what binds; lxcfs, though, reads the
        quota of the reader's own cgroup to decide how many CPUs /proc/cpuinfo
        and /sys/devices/system/cpu show, and that is the inner one. The
        tenant may raise the inner copy; the outer still holds."""
        for s in self.settings(limits, live=True):
            if s.controller != "cpu":
                continue
            path = self.layout.for_controller("cpu").dir(f"{rel}/{INNER}") / s.file
            if path.parent.is_dir():
                cgroups.write(path, s.value)

    def remove(self, rel: str) -> None:
        cgroups.remove(self.layout, rel)

    def exists(self, rel: str) -> bool:
        """Whether cgroup ``rel`` is there in any hierarchy."""
        return any(h.dir(rel).is_dir() for h in self.layout.hierarchies)

    def ident(self, rel: str) -> int | None:
        """Which cgroup ``rel`` is where its CPU time is counted (its
        directory's inode): one made anew, counting from zero, is another."""
        h = self.layout.for_controller("cpuacct") or self.layout.for_controller("cpu")
        try:
            return h.dir(rel).stat().st_ino if h is not None else None
        except OSError:
            return None

    def read(self, rel: str) -> Limits | None:
        """The limits in force on cgroup ``rel``; None when it does not exist."""
        def file(ctrl: str, name: str) -> str | None:
            h = self.layout.for_controller(ctrl)
            return cgroups.read(h.dir(rel) / name) if h is not None else None

        def size(text: str | None) -> int | None:
            if text is None or text == "max" or int(text) >= UNLIMITED or int(text) < 0:
                return None
            return int(text)

        if not self.exists(rel):
            return None
        out = Limits()
        quota, period = file("cpu", "cpu.cfs_quota_us"), file("cpu", "cpu.cfs_period_us")
        cpu_max = file("cpu", "cpu.max")
        if cpu_max is not None:
            quota, period = cpu_max.split()
        if quota not in (None, "max", "-1"):
            out.cpu_limit = round(int(quota) / int(period), 2)
        out.memory = size(file("memory", "memory.limit_in_bytes") or file("memory", "memory.max"))
        memsw = size(file("memory", "memory.memsw.limit_in_bytes"))
        out.swap = (memsw - out.memory if memsw is not None and out.memory is not None
                    else size(file("memory", "memory.swap.max")))
        pids = file("pids", "pids.max")
        out.pids = None if pids in (None, "max") else int(pids)
        return out

    def usage(self, rel: str) -> dict:
        """What the cgroup has used: CPU seconds, memory bytes, processes."""
        def text(ctrl: str, name: str) -> str | None:
            h = self.layout.for_controller(ctrl)
            return cgroups.read(h.dir(rel) / name) if h is not None else None

        cpu = None
        if (ns := text("cpuacct", "cpuacct.usage")) is not None:
            cpu = int(ns) / 1e9
        elif (stat := text("cpu", "cpu.stat")) is not None:  # v2
            usec = dict(line.split() for line in stat.splitlines()).get("usage_usec")
            cpu = int(usec) / 1e6 if usec is not None else None
        memory = text("memory", "memory.usage_in_bytes") or text("memory", "memory.current")
        pids = text("pids", "pids.current")
        return {"cpu_seconds": cpu, "memory": None if memory is None else int(memory),
                "pids": None if pids is None else int(pids)}
