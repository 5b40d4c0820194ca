"""Virtual machines: create, run, reach the console, change, delete."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from osctl.protocol import BUSY, CONFLICT, EXISTS, INVALID, OsctlError

from ..distconfig import for_distribution
from ..model.group import DEFAULT_GROUP, check_group_path
from ..model.lifecycle import Event, check
from ..model.naming import check_name
from ..model.units import parse_size
from ..model.vm import STOPPED, VM, VmLimits
from ..runtime.console import relay
from ..runtime.vmimage import VmFiles, check_ssh_keys, prepare_guest
from ..state import matching
from ..storage import backend_for
from ..undo import Undo
from . import Between, Context, Seconds, Target, command, hold_server, user_ref

MIB = 1 << 20
# The node's policy (config vm.min_cores, max_cores) narrows it, and gives
# the message for 0.
Cores = Annotated[int, Between(0, 4096)]


def find(ctx: Context, ref: str):
    """The VM ``ref`` names (``[pool:]id``) and its pool."""
    return ctx.node.registry.vm(ref)


def _limits(ctx: Context) -> VmLimits:
    p = ctx.node.config.vm
    return VmLimits(p.min_cores, p.max_cores, p.min_memory, p.min_disk)


def _memory(value: int | str) -> int:
    size = parse_size(value, "memory")
    if size % MIB:
        raise OsctlError(INVALID, f"memory must be a whole number of MiB, got {size} bytes")
    return size


def _timeout(ctx: Context, timeout: int | None) -> int:
    return ctx.node.config.vm.stop_timeout if timeout is None else timeout


def _files(pstate, vm: VM) -> VmFiles:
    return VmFiles(pstate.pool.vm_dir(vm.id))


async def _power_on(ctx: Context, pstate, vm: VM) -> None:
    """Mark online (persisted: the daemon starts it again after a node reboot),
    start; a start that fails leaves the mark as it was."""
    check(f"VM {vm.id}", vm.state, Event.START)  # before it is marked online
    was = vm.online
    vm.online = True
    pstate.save_vm(vm)
    try:
        await ctx.node.start_vm(pstate, vm)
    except BaseException:
        vm.online = was
        pstate.save_vm(vm)
        raise


async def _power_off(ctx: Context, pstate, vm: VM, timeout: int | None, kill: bool = False) -> None:
    """Mark offline, power down (ACPI), kill after ``timeout`` (or at once with ``kill``)."""
    vm.online = False
    pstate.save_vm(vm)
    await ctx.node.vms.stop(vm, 0 if kill else _timeout(ctx, timeout), kill)


@command("vm.new", mutating=True, target=Target("user", "user", pool_arg="pool"))
async def new(ctx: Context, id: str, user: str, cores: Cores, memory: int | str, disk: int | str,
              template: str = "debian", version: str | None = None, pool: str | None = None,
              hostname: str | None = None, group: str = DEFAULT_GROUP,
              ssh_keys: list[str] | None = None) -> dict:
    """Create a VM from a template's VM image; nothing is left behind if a
    step fails. ``ssh_keys``: public keys root logs in with."""
    node = ctx.node
    check_name("vm", id)
    keys = check_ssh_keys(ssh_keys or [])
    memory, disk = _memory(memory), parse_size(disk, "disk")
    _limits(ctx).check(cores, memory, disk)
    pstate, u = node.registry.user(user_ref(user, pool))
    pstate.group(check_group_path(group))
    tpl = node.templates.get(template)
    version = tpl.version(version)
    hostname = id if hostname is None else hostname
    vm = VM(id=id, pool=pstate.pool.name, user=u.name, template=tpl.name, version=version,
            cores=cores, memory=memory, disk=disk, group=group,
            hostname=hostname)
    files = _files(pstate, vm)
    backend = backend_for(pstate.pool)
    async with hold_server(ctx, vm, "vm.new", new=True), Undo() as undo:
        if id in pstate.vms:
            raise OsctlError(EXISTS, f"VM {id!r} exists in pool {pstate.pool.name}")
        pstate.group(vm.group)  # deleted while we waited?
        pstate.check_quota(vm)
        pstate.vms[id] = vm  # reserve the id while the image is made
        undo.push(pstate.vms.pop, id)
        image = await node.templates.ensure_vm(tpl, version, ctx.progress)
        ctx.progress({"step": "disk", "message": f"making a {disk >> 30} GiB disk from {tpl.name} {version}"})
        undo.push(backend.destroy, files.dir)
        await backend.create(files.dir)

        def customize(rootfs) -> None:
            for_distribution(tpl.distribution)(rootfs).set_hostname(hostname)
            prepare_guest(rootfs, keys)

        await files.install(image, disk, customize)
        undo.push(pstate.store.delete, "vm", id)
        pstate.save_vm(vm)
    node.events.publish("add", object="vm", pool=vm.pool, id=id)
    return vm.public()


@command("vm.ls")
async def ls(ctx: Context, pool: str | None = None, user: str | None = None,
             state: str | None = None) -> list:
    """VMs, optionally only of a pool, a user or in a state."""
    return [v.public() for v in matching(ctx.node.registry.all_vms(), pool, user, state)]


@command("vm.show")
async def show(ctx: Context, id: str) -> dict:
    """One VM, with where its files are and what it runs with now."""
    pstate, vm = find(ctx, id)
    paths = ctx.node.vms.paths(vm)
    return {**vm.public(), "running_cores": vm.running_cores, "running_memory": vm.running_memory,
            "accelerator": ctx.node.config.vm.accelerator,
            "disk_path": str(_files(pstate, vm).disk), "console_log": str(paths.console_log)}


@command("vm.start", mutating=True, target=Target("vm", "id"))
async def start(ctx: Context, id: str) -> dict:
    """Start a VM (and mark it online)."""
    pstate, vm = find(ctx, id)
    async with hold_server(ctx, vm, "vm.start"):
        await _power_on(ctx, pstate, vm)
    return vm.public()


@command("vm.stop", mutating=True, target=Target("vm", "id"))
async def stop(ctx: Context, id: str, timeout: Seconds | None = None) -> dict:
    """Power down (ACPI) and mark offline; kill it after ``timeout`` seconds."""
    pstate, vm = find(ctx, id)
    async with hold_server(ctx, vm, "vm.stop"):
        await _power_off(ctx, pstate, vm, timeout)
    return vm.public()


@command("vm.restart", mutating=True, target=Target("vm", "id"))
async def restart(ctx: Context, id: str, timeout: Seconds | None = None) -> dict:
    """Power down, then start again: pending cores and memory changes apply."""
    pstate, vm = find(ctx, id)
    async with hold_server(ctx, vm, "vm.restart"):
        await ctx.node.vms.stop(vm, _timeout(ctx, timeout))
        await _power_on(ctx, pstate, vm)
    return vm.public()


@command("vm.kill", mutating=True, target=Target("vm", "id"))
async def kill(ctx: Context, id: str) -> dict:
    """Stop at once, with no clean shutdown, and mark offline."""
    pstate, vm = find(ctx, id)
    async with hold_server(ctx, vm, "vm.kill"):
        await _power_off(ctx, pstate, vm, 0, kill=True)
    return vm.public()


@command("vm.console")
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


@command("vm.del", mutating=True, target=Target("vm", "id"))
async def delete(ctx: Context, id: str, force: bool = False) -> dict:
    """Delete a stopped VM (``force``: kill it first) and its disk."""
    node = ctx.node
    pstate, vm = find(ctx, id)
    async with hold_server(ctx, vm, "vm.del"):
        if vm.state != STOPPED:
            if not force:
                raise OsctlError(CONFLICT, f"VM {vm.id} is {vm.state}: stop it or use --force")
            await node.vms.stop(vm, 0, kill=True)
        pstate.store.delete("vm", vm.id)
        del pstate.vms[vm.id]
        node.vms.remove(vm)
        await backend_for(pstate.pool).destroy(_files(pstate, vm).dir)
    node.events.publish("remove", object="vm", pool=vm.pool, id=vm.id)
    return {"id": vm.id, "pool": vm.pool}


@command("vm.passwd", mutating=True, target=Target("vm", "id"))
async def passwd(ctx: Context, id: str, user: str, password: str) -> dict:
    """Set a user's password in a stopped VM's root filesystem (the way in
    on the serial console: the image comes with root locked)."""
    pstate, vm = find(ctx, id)
    if ":" in user or "\n" in user or "\n" in password:
        raise OsctlError(INVALID, "user and password may not hold ':' or newlines")
    async with hold_server(ctx, vm, "vm.passwd"):
        if vm.state != STOPPED:
            raise OsctlError(CONFLICT, f"VM {vm.id} is {vm.state}: its password is set while it "
                                       "is stopped (no agent reaches a running guest)")
        await _files(pstate, vm).set_password(user, password)
    return {"id": vm.id, "pool": vm.pool, "user": user}


@command("vm.set", mutating=True, target=Target("vm", "id"))
async def set_(ctx: Context, id: str, cores: Cores | None = None, memory: int | str | None = None,
               disk: int | str | None = None, online: bool | None = None,
               timeout: Seconds | None = None, group: str | None = None) -> dict:
    """Change a VM. Cores and memory apply at the next start; the disk grows
    at once (live on a running VM) and never shrinks; online starts or
    powers down (killed after ``timeout`` seconds); the group changes only
    while it is stopped (its QEMU runs in the group's cgroup)."""
    node = ctx.node
    pstate, vm = find(ctx, id)
    if group is not None:
        group = pstate.group(check_group_path(group)).path
    memory = _memory(memory) if memory is not None else None
    disk = parse_size(disk, "disk") if disk is not None else None
    if disk is not None and disk < vm.disk:
        raise OsctlError(INVALID, f"the disk of VM {vm.id} is {vm.disk >> 20} MiB: it can grow, "
                                  f"never shrink (asked for {disk >> 20} MiB)")
    _limits(ctx).check(cores, memory, disk)
    async with hold_server(ctx, vm, "vm.set"):
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
        if cores is not None:
            vm.cores = cores
        if memory is not None:
            vm.memory = memory
        if group is not None:
            vm.group = group
        pstate.save_vm(vm)
        if online is True and not vm.running:
            await _power_on(ctx, pstate, vm)
        elif online is False:
            await _power_off(ctx, pstate, vm, timeout)
    return vm.public()
