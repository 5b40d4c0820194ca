"""What a running server uses and runs, read from /proc and its cgroup:
its processes (with host and container PIDs and UIDs), which server a host
process belongs to, and its uptime.

Everything here is read from the kernel's own tables at the time of asking:
nothing is kept, so nothing can go stale.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from ..model.container import Container
from ..model.idmap import MapEntry
from ..model.pool import Pool
from ..model.vm import VM
from .cgroup.tree import CgroupTree
from .statfs_proxy import Quota
from .vmimage import VmFiles

PROC = Path("/proc")
# Where each process of a cgroup is listed; every hierarchy lists them all,
# pids is the one every layout we run on has.
_LISTED_BY = "pids"


@dataclass(frozen=True)
class Process:
    """One process of a container, seen from the host and from inside."""

    host_pid: int
    ct_pid: int | None  # None: not in the container's PID namespace (LXC's own helpers)
    host_uid: int
    ct_uid: int | None  # None: a host UID outside the container's map
    command: str

    def public(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Owner:
    """The server a host process runs in, from its cgroup path."""

    kind: str  # "ct" or "vm"
    pool: str
    id: str
    group: str


def cgroup_pids(tree: CgroupTree, rel: str) -> list[int]:
    """Every process in cgroup ``rel`` and below it, sorted."""
    h = tree.layout.for_controller(_LISTED_BY) or tree.layout.hierarchies[0]
    pids: set[int] = set()
    for dirpath, _dirs, _files in os.walk(h.dir(rel)):
        try:
            pids.update(int(p) for p in (Path(dirpath) / "cgroup.procs").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue  # the cgroup went while we walked
    return sorted(pids)


def ns_id(host_id: int, entries: Sequence[MapEntry]) -> int | None:
    """The id inside that ``host_id`` maps to, None when outside the map."""
    for e in entries:
        if e.host_id <= host_id < e.host_id + e.count:
            return e.ns_id + host_id - e.host_id
    return None


def process(pid: int, uid_map: Sequence[MapEntry], proc: Path = PROC) -> Process | None:
    """Process ``pid`` as its container sees it; None when it has exited."""
    try:
        status = (proc / str(pid) / "status").read_text()
        cmdline = (proc / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    uid = int(fields["Uid"].split()[0])
    nspid = fields.get("NSpid", "").split()
    # A process entered by lxc-attach or the init is in the container's
    # namespace: its innermost PID is the last one. One PID only: the host's.
    ct_pid = int(nspid[-1]) if len(nspid) > 1 else None
    command = cmdline.replace(b"\0", b" ").decode(errors="replace").strip() or \
        f"[{fields.get('Name', '').strip()}]"
    return Process(pid, ct_pid, uid, ns_id(uid, uid_map), command)


def processes(tree: CgroupTree, rel: str, uid_map: Sequence[MapEntry]) -> list[Process]:
    return [p for pid in cgroup_pids(tree, rel) if (p := process(pid, uid_map)) is not None]


def owner(pid: int, root: str, proc: Path = PROC) -> Owner | None:
    """The container or VM process ``pid`` belongs to, from its cgroup path
    below the daemon's ``root``: ``<root>/pool.P[/group.G...]/ct.ID[/...]``,
    or LXC's monitor of it, ``<root>/monitor/ID@P``. None for any other."""
    try:
        text = (proc / str(pid) / "cgroup").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    for line in text.splitlines():
        parts = [p for p in line.split(":", 2)[-1].split("/") if p]
        anchor = [p for p in root.split("/") if p]
        for i in range(len(parts)):
            if parts[i:i + len(anchor)] != anchor:
                continue
            below = parts[i + len(anchor):]
            if len(below) >= 2 and below[0] == "monitor" and "@" in below[1]:
                ct_id, _, pool = below[1].partition("@")
                return Owner("ct", pool, ct_id, "")
            if not below or not below[0].startswith("pool."):
                continue
            groups = []
            for part in below[1:]:
                if part.startswith("group."):
                    groups.append(part[len("group."):])
                elif part.startswith(("ct.", "vm.")):
                    kind, _, sid = part.partition(".")
                    return Owner(kind, below[0][len("pool."):], sid, "/" + "/".join(groups))
                else:
                    break
    return None


def started_at(pid: int, proc: Path = PROC) -> float | None:
    """When process ``pid`` started (Unix time), from its start in clock ticks since boot."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
        boot = next(int(ln.split()[1]) for ln in (proc / "stat").read_text().splitlines()
                    if ln.startswith("btime "))
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return None
    ticks = int(stat.rpartition(")")[2].split()[19])  # field 22 of stat(5)
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def usage(tree: CgroupTree, rel: str, pid: int | None, now: float) -> dict | None:
    """CPU seconds, memory bytes and processes of cgroup ``rel``, and the
    uptime of ``pid`` (its init or QEMU) in seconds; None when it is not there."""
    if pid is None or not tree.exists(rel):
        return None
    start = started_at(pid)
    return {**tree.usage(rel), "uptime": None if start is None else round(max(0.0, now - start), 1)}


def disk_used(pool: Pool, inst: Container | VM) -> int | None:
    """What a VM's sparse disk holds; what a container's subvolume refers to
    on a btrfs pool with quotas on (its qgroup, from sysfs), its dataset on
zfs. None where that
    cannot be had cheaply (a dir pool would need du)."""
    try:
        if isinstance(inst, VM):
            return VmFiles(pool.vm_dir(inst.id)).disk.stat().st_blocks * 512
        if pool.backend == "btrfs":
            return Quota(str(pool.rootfs(inst.id))).read("referenced")
        if pool.backend == "zfs":  # statfs of a dataset counts what it refers to
            st = os.statvfs(pool.ct_dir(inst.id))
            return (st.f_blocks - st.f_bfree) * st.f_frsize
    except OSError:
        pass
    return None
