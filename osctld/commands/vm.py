"""Virtual machines: create, run, reach the console, change, delete."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Annotated

from osctl.protocol import BUSY, CONFLICT, INVALID, OsctlError

from .. import maintenance
from ..distconfig import for_distribution
from ..model.account import Perm
from ..model.group import DEFAULT_GROUP, check_group_path
from ..model.cluster import Size
from ..model.lifecycle import State
from ..model.naming import check_name
from ..model.sendlog import SOURCE
from ..model.units import parse_size
from ..model.vm import STOPPED, VM, VmLimits
from ..runtime import logtail
from ..runtime.console import relay
from ..runtime.usage import disk_used
from ..runtime.vmimage import VmFiles, check_ssh_keys, prepare_guest
from ..state import matching
from ..storage import backend_for
from ..transfer import copies
from . import (Between, Context, LogLines, Seconds, Target, cluster, command, ct_usage, deletion,
               given, hold_instance, user_ref, vm_migrate)
from .instance import creating, group_to, lifecycle

MIB = 1 << 20
# The node's policy (config vm.min_cores, max_cores) narrows it, and gives
# the message for 0.
Cores = Annotated[int, Between(0, 4096)]


def find(ctx: Context, ref: str):
    """The VM ``ref`` names (``[pool:]id``) and its pool."""
    return ctx.node.registry.vm(ref)


def vm_policy(ctx: Context) -> VmLimits:
    """The node's rules for VM resources (and flavors')."""
    p = ctx.node.config.vm
    return VmLimits(p.min_cores, p.max_cores, p.min_memory, p.min_disk)


def memory_size(value: int | str) -> int:
    size = parse_size(value, "memory")
    if size % MIB:
        raise OsctlError(INVALID, f"memory must be a whole number of MiB, got {size} bytes")
    return size


def _flavored(pstate, flavor: str | None, cores: int | None, memory: int | str | None,
              disk: int | str | None) -> tuple[int | None, int | str | None, int | str | None]:
    """Cores, memory and disk: those given, and flavor ``flavor``'s where not given."""
    if flavor is None:
        return cores, memory, disk
    f = pstate.flavor(flavor)
    return (f.cores if cores is None else cores, f.memory if memory is None else memory,
            f.disk if disk is None else disk)


def _timeout(ctx: Context, timeout: int | None) -> int:
    return ctx.node.config.vm.stop_timeout if timeout is None else timeout


def _files(pstate, vm: VM) -> VmFiles:
    return VmFiles(pstate.pool.vm_dir(vm.id))


@command("vm.new", mutating=True, target=Target("user", "user", pool_arg="pool"),
         needs=Perm.MANAGER,
         on=Target("group", "group", pool_of=Target("user", "user", pool_arg="pool")))
async def new(ctx: Context, id: str, user: str, cores: Cores | None = None,
              memory: int | str | None = None, disk: int | str | None = None,
              template: str = "debian", version: str | None = None, pool: str | None = None,
              hostname: str | None = None, group: str = DEFAULT_GROUP,
              flavor: str | None = None, ssh_keys: list[str] | None = None,
              node: str | None = None, server_group: str | None = None,
              start: bool = False) -> dict:
    """Create a VM from a template's VM image, sized by a flavor and the
    cores, memory and disk given (which override it); nothing is left
    behind if a step fails. ``ssh_keys``: public keys root logs in with.
    In a cluster, ``node`` (a member, or ``auto``) and ``server_group`` have
    the leader place it, and that node create it (its user and pool must be there).
    ``start``: started once created, on its node (a start that fails leaves
    it created, stopped)."""
    check_name("vm", id)
    keys = check_ssh_keys(ssh_keys or [])
    elsewhere = node is not None or server_group is not None
    # Sized here also for another node: flavors are named alike on every member.
    pstate = ctx.node.registry.pool(pool) if elsewhere else ctx.node.registry.user(user_ref(user, pool))[0]
    cores, memory, disk = _flavored(pstate, flavor, cores, memory, disk)
    if cores is None or memory is None or disk is None:
        raise OsctlError(INVALID, "give the VM's cores, memory and disk, or a flavor")
    memory, disk = memory_size(memory), parse_size(disk, "disk")
    vm_policy(ctx).check(cores, memory, disk)
    if elsewhere:
        args = dict(id=id, user=user, cores=cores, memory=memory, disk=disk, template=template,
                    version=version, pool=pool, hostname=hostname, group=group, flavor=flavor,
                    ssh_keys=ssh_keys, start=start)
        return await cluster.create_on(ctx, "vm", id, Size(cores, memory, disk), node,
                                       server_group, args)
    cluster.check_free(ctx, "vm", id)
    here = ctx.node
    pstate, u = here.registry.user(user_ref(user, pool))
    pstate.group(check_group_path(group))
    tpl = here.templates.get(template)
    version = tpl.version(version)
    hostname = id if hostname is None else hostname
    vm = VM(id=id, pool=pstate.pool.name, user=u.name, template=tpl.name, version=version,
            cores=cores, memory=memory, disk=disk, group=group,
            hostname=hostname, flavor=flavor)
    files = _files(pstate, vm)
    backend = backend_for(pstate.pool)
    async with creating(ctx, pstate, vm, u) as undo:
        image = await here.templates.ensure_vm(tpl, version, ctx.progress)
        ctx.progress({"step": "disk", "message": f"making a {disk >> 30} GiB disk from {tpl.name} {version}"})
        undo.push(backend.destroy, files.dir)
        await backend.create(files.dir)

        def customize(rootfs) -> None:
            for_distribution(tpl.distribution)(rootfs).set_hostname(hostname)
            prepare_guest(rootfs, keys)

        await files.install(image, disk, customize)
    return await lifecycle(ctx, "vm", f"{vm.pool}:{id}", "start") if start else vm.public()


@command("vm.ls", needs=Perm.STATS)
async def ls(ctx: Context, pool: str | None = None, user: str | None = None,
             state: str | None = None) -> list:
    """VMs, optionally only of a pool, a user or in a state (an account's:
    those it may see)."""
    return [v.public() for v in matching(ctx.node.registry.all_vms(), pool, user, state)
            if ctx.access.may(Perm.STATS, v.pool, v.group)]


@command("vm.show", target=Target("vm", "id"), needs=Perm.STATS)
async def show(ctx: Context, id: str) -> dict:
    """One VM, with where its files are and what it runs with now."""
    pstate, vm = find(ctx, id)
    paths = ctx.node.vms.paths(vm)
    return {**vm.public(), "running_cores": vm.running_cores, "running_memory": vm.running_memory,
            "accelerator": ctx.node.config.vm.accelerator,
            "disk_path": str(_files(pstate, vm).disk), "console_log": str(paths.console_log),
            # CPU seconds and %, memory, processes (QEMU's) and uptime: None while stopped.
            "usage": ct_usage.server_usage(ctx, ctx.node.vms.cgroup(vm),
                                           vm.pid if vm.running else None, time.time()),
            "disk_used": disk_used(pstate.pool, vm)}  # what its sparse disk holds


@command("vm.log", target=Target("vm", "id"), needs=Perm.STATS)
async def log(ctx: Context, id: str, lines: LogLines = 200) -> dict:
    """The last ``lines`` of the VM's console log (its serial console, kept
    across its runs)."""
    _, vm = find(ctx, id)
    path = ctx.node.vms.paths(vm).console_log
    return {"id": vm.id, "pool": vm.pool, "log": await asyncio.to_thread(logtail.tail, path, lines)}


@command("vm.start", mutating=True, target=Target("vm", "id"), needs=Perm.SUDO_SRV)
async def start(ctx: Context, id: str) -> dict:
    """Start a VM (and mark it online)."""
    return await lifecycle(ctx, "vm", id, "start")


@command("vm.stop", mutating=True, target=Target("vm", "id"), needs=Perm.SUDO_SRV)
async def stop(ctx: Context, id: str, timeout: Seconds | None = None) -> dict:
    """Power down (ACPI) and mark offline; kill it after ``timeout`` seconds."""
    return await lifecycle(ctx, "vm", id, "stop", _timeout(ctx, timeout))


@command("vm.restart", mutating=True, target=Target("vm", "id"), needs=Perm.SUDO_SRV)
async def restart(ctx: Context, id: str, timeout: Seconds | None = None) -> dict:
    """Power down, then start again: pending cores and memory changes apply."""
    return await lifecycle(ctx, "vm", id, "restart", _timeout(ctx, timeout))


@command("vm.kill", mutating=True, target=Target("vm", "id"), needs=Perm.SUDO_SRV)
async def kill(ctx: Context, id: str) -> dict:
    """Stop at once, with no clean shutdown, and mark offline."""
    return await lifecycle(ctx, "vm", id, "kill")


@command("vm.console", target=Target("vm", "id"), needs=Perm.LOGIN)
async def console(ctx: Context, id: str) -> dict:
    """The VM's serial console on the caller's stdin and stdout (passed with a
    lifeline pipe's read end, see runtime/console.py); Ctrl-a q leaves."""
    _, vm = find(ctx, id)
    if not vm.running:
        raise OsctlError(CONFLICT, f"VM {vm.id} is {vm.state}, not running")
    if len(ctx.fds) != 3:
        raise OsctlError(INVALID, "vm.console needs the caller's stdin, stdout and a lifeline pipe")
    attached = ctx.node.vm_consoles
    if (vm.pool, vm.id) in attached:
        raise OsctlError(BUSY, f"someone is attached to the console of VM {vm.id}")
    attached.add((vm.pool, vm.id))
    try:
        why = await relay(ctx.node.vms.paths(vm).console, *ctx.fds)
    finally:
        attached.discard((vm.pool, vm.id))
    return {"id": vm.id, "ended": why}


@command("vm.del", mutating=True, target=Target("vm", "id"), needs=Perm.MANAGER)
async def delete(ctx: Context, id: str, force: bool = False, at: str | None = None,
                 cancel: bool = False) -> dict:
    """Delete a stopped (or soft-deleted) VM (``force``: kill it first, or
    drop one being received from another node, and take its replica down:
    the staged copy at its standby too) and its disk; or, with ``at``,
    schedule its staged deletion around that date, which ``cancel`` calls
    off until its hard stage (which takes a replica down as ``force``)."""
    node = ctx.node
    if cancel:
        deletion.past_hard(ctx, "vm", id)
    pstate, vm = find(ctx, id)
    if deletion.staged_args(force, at, cancel):
        return await (deletion.cancel(ctx, pstate, vm) if cancel else
                      deletion.schedule(ctx, pstate, vm, at or ""))
    if vm.state == State.STAGED and force:
        await vm_migrate.stop_waiting(vm)  # a finish waiting for its guest holds its lock
    async with hold_instance(ctx, vm, "vm.del"):
        if vm.send_log is not None and vm.send_log.role == SOURCE and not force:
            raise OsctlError(CONFLICT, f"VM {vm.id} has a replica at {vm.send_log.peer}: drop it "
                                       "first (osctl vm drop-replica) or use --force")
        if vm.state not in (STOPPED, State.SOFT_DELETED):
            if not force:
                raise OsctlError(CONFLICT, f"VM {vm.id} is {vm.state}: stop it or use --force")
            if vm.state == State.STAGED:  # received in part: its incoming QEMU goes too
                await node.vms.drop_incoming(vm)
            else:
                await node.vms.stop(vm, 0, kill=True)
        await copies.take_down(node, vm)
        await node.remove_vm(pstate, vm)  # with its replica's passes, at either end
    node.events.publish("remove", object="vm", pool=vm.pool, id=vm.id, group=vm.group)
    return {"id": vm.id, "pool": vm.pool}


@command("vm.passwd", mutating=True, target=Target("vm", "id"))
async def passwd(ctx: Context, id: str, user: str, password: str) -> dict:
    """Set a user's password in a stopped VM's root filesystem (the way in
    on the serial console: the image comes with root locked)."""
    pstate, vm = find(ctx, id)
    if ":" in user or "\n" in user or "\n" in password:
        raise OsctlError(INVALID, "user and password may not hold ':' or newlines")
    async with hold_instance(ctx, vm, "vm.passwd"):
        if vm.state != STOPPED:
            raise OsctlError(CONFLICT, f"VM {vm.id} is {vm.state}: its password is set while it "
                                       "is stopped (no agent reaches a running guest)")
        await _files(pstate, vm).set_password(user, password)
    return {"id": vm.id, "pool": vm.pool, "user": user}


@command("vm.set", mutating=True, target=Target("vm", "id"), needs=Perm.MANAGER)
async def set_(ctx: Context, id: str, cores: Cores | None = None, memory: int | str | None = None,
               disk: int | str | None = None, online: bool | None = None,
               timeout: Seconds | None = None, group: str | None = None,
               now: bool = False, flavor: str | None = None) -> dict:
    """Change a VM. Cores and memory apply at the next start: a running VM's
    restart into them is planned into its group's maintenance window (``now``:
    it restarts at once, ``timeout`` its clean stop's limit); the disk grows
    at once (live on a running VM) and never shrinks; a flavor gives the
    cores, memory and disk not given; online starts or powers down (killed
    after ``timeout`` seconds); the group changes only while it is stopped
    (its QEMU runs in the group's cgroup)."""
    node = ctx.node
    pstate, vm = find(ctx, id)
    cores, memory, disk = _flavored(pstate, flavor, cores, memory, disk)
    if flavor is not None and disk is not None and parse_size(disk, "disk") < vm.disk:
        disk = None  # a smaller flavor's disk: a disk never shrinks, it keeps its size
    if group is not None:
        group = group_to(ctx, pstate, group, "VM")
    memory = memory_size(memory) if memory is not None else None
    disk = parse_size(disk, "disk") if disk is not None else None
    if disk is not None and disk < vm.disk:
        raise OsctlError(INVALID, f"the disk of VM {vm.id} is {vm.disk >> 20} MiB: it can grow, "
                                  f"never shrink (asked for {disk >> 20} MiB)")
    vm_policy(ctx).check(cores, memory, disk)
    async with hold_instance(ctx, vm, "vm.set"):
        if group is not None:
            pstate.group(group)  # deleted while we waited?
            if group != vm.group and vm.state != STOPPED:
                raise OsctlError(CONFLICT, f"VM {vm.id} is {vm.state}: stop it to move it "
                                           f"to group {group}")
        pstate.check_quota(replace(vm, cores=vm.cores if cores is None else cores,
                                   memory=vm.memory if memory is None else memory,
                                   disk=vm.disk if disk is None else disk))
        if disk is not None and disk > vm.disk:
            if vm.running:
                await node.vms.resize_disk(vm, disk)
            else:
                _files(pstate, vm).grow_offline(disk)
            vm.disk = disk
        before = {"cores": vm.cores, "memory": vm.memory}
        if cores is not None:
            vm.cores = cores
        if memory is not None:
            vm.memory = memory
        if group is not None:
            vm.group = group
        if flavor is not None:
            vm.flavor = flavor
        pstate.save_vm(vm)
        planned = await _maintenance(ctx, pstate, vm, before, timeout, now)
        if online is True and not vm.running:
            await node.vms.start(pstate, vm)
        elif online is False:
            node.vms.keep_stopped(pstate, vm)
            await node.vms.stop(vm, _timeout(ctx, timeout))
    node.events.publish("change", object="vm", pool=vm.pool, id=vm.id, group=vm.group,
                        settings=given(cores=cores, memory=memory, disk=disk, online=online,
                                       group=group, flavor=flavor))
    return {**vm.public(), "maintenance": planned}


async def _maintenance(ctx: Context, pstate, vm: VM, before: dict, timeout: int | None,
                       now: bool) -> dict | None:
    """A running VM's new cores or memory wait for a restart: planned into
    its group's window, or (``now``) done at once with any planned before."""
    node = ctx.node
    changed = {k: v for k, v in before.items() if getattr(vm, k) != v}
    m = maintenance.open_for(pstate, vm)
    if maintenance.pending(vm) and (changed or m is None):
        m = maintenance.plan(node, pstate, vm, changed, _timeout(ctx, timeout), at_once=now)
    if now and m is not None:
        await maintenance.run_held(node, pstate, m)
    return None if m is None else m.public()
