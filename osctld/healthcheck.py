"""The node checked against what the daemon holds, and put right where safe.

Every container's and VM's pieces (its config file, rootfs or disk, LXC
config, cgroup, host network ends and routes, bind mount sources), the
users' lines in /etc/subuid and /etc/subgid, and the node's helpers (lxcfs,
the statfs proxy). Each mismatch is a ``Finding`` saying what is wrong and
what a repair does (None: nothing the daemon may do alone; the finding says
what a person can). A repair is what the daemon does anyway on its way
(write a config again from its copy, re-sync a host end as ``reconcile``
does, remove an empty cgroup of a stopped container, ``sync_subids``,
``ensure`` a helper): each runs under the object's lock, and whether it
worked is read back by checking again, never assumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from .locks import instance_key, pool_key
from .model.container import Container
from .model.lifecycle import State
from .model.vm import VM
from .runtime import binds
from .runtime.statfs import wants_proxy
from .subid import entries

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger(__name__)
Repair = Callable[[], Awaitable[Any]]


@dataclass
class Finding:
    object: str  # ct, vm, user or node
    id: str  # pool:id, or the node's piece
    check: str  # config, rootfs, disk, lxc-config, cgroup, netif, mount, subuid, lxcfs, statfs-proxy
    problem: str
    repair: str | None  # what --repair does; None: nothing safe
    fix: Repair | None = field(default=None, repr=False, compare=False)
    inst: Container | VM | None = field(default=None, repr=False, compare=False)  # whose lock
    repaired: bool | None = None  # after a repair: whether checking again finds it gone
    error: str | None = None  # why a repair failed

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.object, self.id, self.check, self.problem)

    def public(self) -> dict:
        return {k: getattr(self, k) for k in PUBLIC}


PUBLIC = [f.name for f in fields(Finding) if f.name not in ("fix", "inst")]


def _async(fn: Callable[[], Any]) -> Repair:
    async def run() -> Any:
        return fn()
    return run


async def check(node: Node) -> list[Finding]:
    """What does not match, nothing changed."""
    out: list[Finding] = []
    for pstate in list(node.registry.pools.values()):
        for ct in list(pstate.cts.values()):
            out += await _container(node, pstate, ct)
        for vm in list(pstate.vms.values()):
            out += await _vm(node, pstate, vm)
    out += _subids(node)
    out += _helpers(node)
    return out


def _config(pstate, inst: Container | VM) -> list[Finding]:
    if pstate.store.path(inst.kind, inst.id).is_file():
        return []
    return [Finding(inst.kind, f"{inst.pool}:{inst.id}", "config",
                    f"its config {pstate.store.path(inst.kind, inst.id)} is missing",
                    "write it again from the daemon's copy",
                    _async(lambda: pstate.save_instance(inst)), inst)]


def _cgroup(node: Node, inst: Container | VM, rel: str) -> list[Finding]:
    tree = node.containers.cgroups
    ref = f"{inst.pool}:{inst.id}"
    if inst.running and not tree.exists(rel):
        return [Finding(inst.kind, ref, "cgroup", f"it runs without its cgroup {rel}: no limits bind it",
                        None)]
    if inst.state == State.STOPPED and tree.exists(rel):
        return [Finding(inst.kind, ref, "cgroup", f"it is stopped, but its cgroup {rel} is left",
                        "remove the cgroup (only if no process is in it)",
                        _async(lambda: tree.remove(rel)), inst)]
    return []


async def _netifs(node: Node, inst: Container | VM) -> list[Finding]:
    if not inst.running or (isinstance(inst, Container) and not inst.init_pid):
        return []
    out = []
    for n in inst.netifs:
        try:
            problems = await node.net.differences(n)
        except Exception as e:  # noqa: BLE001 - a netlink failure is a finding too
            problems = [f"cannot read its host end: {e}"]
        present = not any(p.startswith("no host end") for p in problems)
        for p in problems:
            out.append(Finding(inst.kind, f"{inst.pool}:{inst.id}", "netif", f"{n.name}: {p}",
                               "re-sync its host end (address, routes, shaping)" if present else
                               "plug the netif in again",
                               lambda n=n, present=present: node.net.restore(inst, n, present),
                               inst))
    return out


async def _container(node: Node, pstate, ct: Container) -> list[Finding]:
    ref = f"{ct.pool}:{ct.id}"
    out = _config(pstate, ct)
    rootfs = pstate.pool.rootfs(ct.id)
    if not rootfs.is_dir():
        out.append(Finding("ct", ref, "rootfs", f"its rootfs {rootfs} is missing: it cannot start",
                           None))
    lxc_config = node.containers.lxc.ct_dir(ct.pool, ct.id) / "config"
    if not lxc_config.is_file():
        out.append(Finding("ct", ref, "lxc-config", f"its LXC config {lxc_config} is missing",
                           "render it again", _async(lambda: node.containers.write_config(pstate, ct)),
                           ct))
    out += _cgroup(node, ct, node.containers.cgroups.ct(ct.pool, ct.group, ct.id))
    out += await _netifs(node, ct)
    live = binds.mount_points(ct.init_pid) if ct.running and ct.init_pid else None
    for m in ct.mounts:
        if not os.path.exists(m.src):
            out.append(Finding("ct", ref, "mount", f"the source {m.src} of its mount on {m.dst} is "
                                                   "gone: its next start fails", None))
        elif live is not None and m.dst not in live:
            out.append(Finding("ct", ref, "mount", f"{m.src} is not mounted on {m.dst} inside",
                               "mount it", lambda m=m: binds.mount_live(ct.id, ct.init_pid, m), ct))
    return out


async def _vm(node: Node, pstate, vm: VM) -> list[Finding]:
    out = _config(pstate, vm)
    disk_dir = pstate.pool.vm_dir(vm.id)
    if not disk_dir.is_dir():
        out.append(Finding("vm", f"{vm.pool}:{vm.id}", "disk", f"its disk directory {disk_dir} is "
                                                                "missing: it cannot start", None))
    out += _cgroup(node, vm, node.containers.cgroups.vm(vm.pool, vm.group, vm.id))
    out += await _netifs(node, vm)
    return out


def _subids(node: Node) -> list[Finding]:
    users = node.registry.all_users()
    uid, gid = entries(users)
    out = []
    for name, wanted in (("subuid", uid), ("subgid", gid)):
        path = node.subids.files[name]
        try:
            have = set(path.read_text().splitlines())
        except FileNotFoundError:
            have = set()
        for line in wanted:
            if line not in have:
                out.append(Finding("node", name, "subuid", f"{path} lacks {line}: containers of its "
                                                            "user cannot start",
                                   "write the users' lines again", node.sync_subids))
    return out


def _helpers(node: Node) -> list[Finding]:
    lxcfs, statfs = node.containers.lxcfs, node.containers.statfs
    out = []
    if lxcfs.enabled and not (lxcfs.active and lxcfs.answers()):
        out.append(Finding("node", "lxcfs", "lxcfs", f"lxcfs at {lxcfs.mountpoint} is not there or "
                                                     "does not answer: /proc views are the node's",
                           "start lxcfs (containers running meanwhile see it after their restart)",
                           lambda: asyncio.to_thread(lxcfs.ensure)))
    needs = any(wants_proxy(p.pool.backend, c.disk) for p in node.registry.pools.values()
                for c in p.cts.values())
    if needs and not statfs.stopped and not statfs.answers():
        out.append(Finding("node", "statfs-proxy", "statfs-proxy",
                           f"the statfs proxy at {statfs.socket} does not answer: df in containers "
                           "with a disk quota fails", "start the statfs proxy",
                           lambda: asyncio.to_thread(statfs.ensure)))
    return out


async def repair(node: Node, findings: list[Finding]) -> None:
    """Run the repair of each finding that has one, under its object's lock
    (its pool's shared), then check again: ``repaired`` says which are gone."""
    done = set()
    for f in findings:
        if f.fix is None or f.key in done:
            continue
        done.add(f.key)
        try:
            async with _held(node, f.inst, f"healthcheck {f.check}"):
                await f.fix()
            log.warning("healthcheck repaired %s %s: %s (%s)", f.object, f.id, f.problem, f.repair)
        except Exception as e:  # noqa: BLE001 - reported in the finding, the others go on
            f.error = str(e)
            log.error("healthcheck could not repair %s %s: %s: %s", f.object, f.id, f.problem, e)
    left = {f.key for f in await check(node)}
    for f in findings:
        f.repaired = f.key not in left if f.fix is not None else False


@contextlib.asynccontextmanager
async def _held(node: Node, inst: Container | VM | None, what: str):
    if inst is None:
        yield
        return
    async with node.locks.hold(pool_key(inst.pool), what, shared=True), \
            node.locks.hold(instance_key(inst.kind, inst.pool, inst.id), what):
        yield
