"""A VM's replica on another node (cluster HA), as ``ct replicate`` keeps a
container's: ``vm.replicate`` here, the ``vm.receive.replica*`` verbs there.

The first pass registers the VM at the other node as a *staged* VM that
never starts (the checks of ``vm migrate``'s destination: its user and group
there, its addresses free; new interconnect indices), with a send log
(``model/sendlog.py``, ``replica``) on both ends; each pass then sends the
VM's files as they were at one instant:

- between two btrfs pools (``btrfs``): a read-only snapshot of the VM's
  subvolume (disk, kernel, initramfs), taken with the guest paused (QEMU's
  ``stop`` drains and flushes its writes; the pause lasts the snapshot,
  well under a second), streamed with ``btrfs send -p`` of the last one:
  only the blocks written since travel;
- otherwise (``tar``): the files as a sparse tar, whole at each pass, and
  only of a stopped VM (a running guest's disk read over seconds would be
  torn: no one instant).

Either way a replica of a running VM is crash-consistent: the disk as a
power cut would leave it, which the guest's journal recovers from, never
what the guest had in memory. The source keeps its snapshots in
``<pool>/vm/.<id>.send``, the replica its passes in ``<pool>/vm/.<id>.recv``
(names no VM can have, so never taken for a VM's directory).

``vm.recover`` on the node holding the replica, once the VM's own node is
gone: the last pass becomes the VM's directory (a writable snapshot of
it, or the received tree) and it starts; the reply says how old its data
is. ``vm.replica.drop`` ends a replica (the cluster does so when the
standby changes or the VM moves).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from pathlib import Path

from osctl.protocol import CONFLICT, INVALID, NOT_FOUND, UNSUPPORTED, OsctlError

from ..model.lifecycle import Event
from ..model.sendlog import DESTINATION, SOURCE, SendLog, Stage, Step, next_stage
from ..model.vm import RUNNING, STOPPED, VM
from ..runtime.vm import Pause
from ..runtime.vmimage import VmFiles
from ..storage import backend_for
from ..transfer import channel, copies, streams
from ..transfer.receive_verbs import ReceiveContext, receive_verb
from ..undo import Undo
from . import Context, Target, command, hold_instance
from .ct_replica import drop_with, replica_here
from .ct_send import btrfs_pass, btrfs_received, leftover_passes, pass_taken, save_log, started
from .vm_migrate import BOOT_FILES, held, received_vm, reserve, tar, untar


def _stream(backend) -> str:
    """How a VM's passes go from or into ``backend``'s pool: btrfs streams
    between btrfs pools, else the files whole (tar)."""
    return "btrfs" if backend.send_stream == "btrfs" else "tar"


# --- the source ------------------------------------------------------------------

@command("vm.replicate", mutating=True, target=Target("vm", "id"))
async def replicate(ctx: Context, id: str, dest: str, to_pool: str | None = None) -> dict:
    """One pass of VM ``id``'s replica at ``dest`` (``host[:port]``, in
    ``to_pool`` there): the whole VM the first time, then (btrfs) what
    changed. It runs on throughout (paused for the snapshot's instant)."""
    node = ctx.node
    channel.split_dest(dest)
    pstate, vm = node.registry.vm(id)
    backend = backend_for(pstate.pool)
    async with hold_instance(ctx, vm, "vm.replicate"):
        slog = vm.send_log
        if slog is not None and slog.role != SOURCE:
            raise OsctlError(CONFLICT, f"VM {vm.id} is a replica here: no replica of it")
        if slog is not None and slog.peer != dest:
            raise OsctlError(CONFLICT, f"VM {vm.id} is replicated to {slog.peer}: drop that "
                                       "first (osctl vm drop-replica)")
        if vm.transfer is not None or vm.state not in (RUNNING, STOPPED):
            raise OsctlError(CONFLICT, f"VM {vm.id} is {vm.state}: only a running or a stopped "
                                       "VM is replicated")
        if slog is None:
            stream = _stream(backend)
            _torn(vm, stream, f"pool {pstate.pool.name}")
            slog = await _register(ctx, pstate, vm, dest, to_pool, stream)
            try:
                _torn(vm, slog.stream, f"pool {slog.pool} at {dest}")
            except OsctlError:  # not kept: another pool there may do
                await copies.cancel_at(ctx.node, "vm", slog)
                save_log(pstate, vm, None)
                raise
        else:
            _torn(vm, slog.stream, f"its replica's pool {slog.pool} at {slog.peer}")
        pause = Pause()
        slog = await _pass(ctx, pstate, vm, slog, pause)
    return {"id": vm.id, "pool": vm.pool, "dest": dest, "taken": slog.taken,
            "stream": slog.stream, "paused": pause.seconds}


def _torn(vm: VM, stream: str, where: str) -> None:
    """Refuse a whole-file pass of a running VM: its disk, read over
    seconds while the guest writes, would be of no one instant."""
    if vm.running and stream == "tar":
        raise OsctlError(UNSUPPORTED, f"VM {vm.id} runs and {where} has no snapshots: a running "
                                      "VM is replicated between btrfs pools (its disk at one "
                                      "instant); stop it first")


async def _register(ctx: Context, pstate, vm: VM, dest: str, to_pool: str | None,
                    stream: str) -> SendLog:
    """The staged VM at ``dest`` (its passes as ``stream`` if it can take
    them), and the send log here that names it."""
    node = ctx.node
    ctx.progress({"step": "config", "message": f"registering {vm.id} at {dest}"})
    reply = await channel.call(node, dest, "vm.receive.replica", {
        "id": vm.id, "pool": to_pool, "vm": vm.to_dict(), "stream": stream})
    slog = SendLog(role=SOURCE, token=reply["token"], stage=Stage.CONFIG, peer=dest, as_id=vm.id,
                   pool=reply["pool"], stream=reply["stream"], replica=True)
    try:
        save_log(pstate, vm, slog)
    except BaseException:
        await copies.cancel_at(ctx.node, "vm", slog)
        raise
    return slog


async def _pass(ctx: Context, pstate, vm: VM, slog: SendLog, pause: Pause) -> SendLog:
    """One copy of the VM's files at the replica, its stage saved on both
    ends (``pause``: how long its guest was paused for it)."""
    node = ctx.node
    step = slog.next_pass
    meter = streams.Meter(ctx.progress, str(step))
    files = VmFiles(pstate.pool.vm_dir(vm.id))
    args = {"id": vm.id, "pool": slog.pool, "token": slog.token}
    if slog.stream == "tar":
        taken = time.time()
        async with tar(files, [*BOOT_FILES, files.disk.name]) as stream:
            await channel.call(node, slog.peer, "vm.receive.replica.pass", {**args, "taken": taken},
                               stdin=stream, progress=meter)
        done = slog.after(step, f"VM {vm.id}", taken=taken)
    else:
        name, taken, _ = await btrfs_pass(node, pstate, files.dir, pstate.pool.sent("vm", vm.id), slog,
                                          "vm.receive.replica.pass", args, meter,
                                          node.vms.paused(vm, pause))
        done = slog.after(step, f"VM {vm.id}", snapshot=name, taken=taken)
    assert done is not None
    save_log(pstate, vm, done)
    return done


@command("vm.replica.drop", mutating=True, target=Target("vm", "id"))
async def drop_replica(ctx: Context, id: str, local: bool = False) -> dict:
    """VM ``id``'s replica goes: at its node (``local``: only this end's
    snapshots and record of it, for a node that is gone) and here."""
    pstate, vm = ctx.node.registry.vm(id)
    async with hold_instance(ctx, vm, "vm.replica.drop"):
        slog = vm.send_log
        if slog is None or slog.role != SOURCE:
            raise OsctlError(CONFLICT, f"VM {vm.id} has no replica")
        if not local:
            await copies.cancel_at(ctx.node, "vm", slog)
        await backend_for(pstate.pool).destroy_all(pstate.pool.sent("vm", vm.id))
        save_log(pstate, vm, None)
    return vm.public()


async def drop(ctx: Context, id: str) -> None:
    """The VM's replica goes (at its node too if that answers), if it has
    one: it stops being replicated, or moves."""
    _, vm = ctx.node.registry.vm(id)
    await drop_with(vm, lambda local: drop_replica(ctx, id, local=local))


# --- the node holding the replica --------------------------------------------------

@command("vm.recover", mutating=True, target=Target("vm", "id"))
async def recover(ctx: Context, id: str, start: bool = True) -> dict:
    """Turn the replica of VM ``id`` held here into the VM and start it
    (``start`` false: leave it stopped). For when its own node is gone:
    what it wrote after the last pass is lost (the reply's ``data_age``
    says how much time that is)."""
    node = ctx.node
    pstate, vm = node.registry.vm(id)
    backend = backend_for(pstate.pool)
    async with hold_instance(ctx, vm, "vm.recover"):
        slog = replica_here(vm)
        next_stage(DESTINATION, slog.stage, Step.STATE, f"VM {vm.id}")
        recv, home = pstate.pool.received("vm", vm.id), pstate.pool.vm_dir(vm.id)
        async with Undo() as undo:
            if slog.stream == "btrfs":
                assert slog.snapshot is not None
                await backend.clone(recv / slog.snapshot, home)
                undo.push(backend.destroy, home)
            else:
                _settled(recv)
                os.rename(recv, home)
                undo.push(os.rename, home, recv)
            node.vms.apply(vm, Event.ADOPT)
            undo.push(node.vms.apply, vm, Event.STAGE)
            save_log(pstate, vm, None)
        await leftover_passes(backend.destroy_passes("vm", vm.id), vm)
    node.events.publish("add", object="vm", pool=vm.pool, id=vm.id, group=vm.group)
    return {**await started(node, pstate, vm, start), "taken": slog.taken,
            "data_age": None if slog.taken is None else time.time() - slog.taken}


def _settled(recv: Path) -> None:
    """A tar pass's swap that a crash cut short between its renames: the
    last good copy (``.old``, which the send log still names) back in place."""
    old = recv.with_name(recv.name + ".old")
    if old.exists() and not recv.exists():
        os.rename(old, recv)


@contextlib.asynccontextmanager
async def _held_replica(rctx: ReceiveContext, args: dict, what: str):
    """The staged replica ``args`` name, locked, and looked up again once
    locked: a cancel or ``vm del --force`` that held the lock first leaves
    nothing a pass waiting behind it could write into again."""
    _, vm, _ = _replica(rctx, args)
    async with held(rctx, vm, what):
        yield _replica(rctx, args)


def _replica(rctx: ReceiveContext, args: dict):
    """The staged replica ``args`` name (pool, id, token), sent with this key."""
    pool, id = args.get("pool"), args.get("id")
    if not isinstance(id, str) or not isinstance(args.get("token"), str):
        raise OsctlError(INVALID, "id and token must be strings")
    pstate, vm = rctx.node.registry.vm(f"{pool}:{id}" if pool else id)
    slog = vm.send_log
    if slog is None or slog.role != DESTINATION or slog.peer != rctx.key.name \
            or not secrets.compare_digest(slog.token, args["token"]):
        raise OsctlError(NOT_FOUND, f"VM {vm.id} is no replica of this sender here")
    return pstate, vm, slog


@receive_verb("vm.receive.replica")
async def receive_replica(rctx: ReceiveContext, args: dict) -> dict:
    """Register the VM staged, as a replica (no file yet)."""
    node = rctx.node
    pstate, vm = received_vm(rctx, args)
    vm.online = False  # not started with the daemon: recover starts it
    stream = _stream(backend_for(pstate.pool)) if args.get("stream") == "btrfs" else "tar"
    token = secrets.token_hex(20)
    async with held(rctx, vm, "vm.receive.replica"), Undo() as undo:
        await reserve(node, pstate, vm, False, undo)
        vm.send_log = SendLog(role=DESTINATION, token=token, stage=Stage.CONFIG, peer=rctx.key.name,
                              as_id=vm.id, pool=pstate.pool.name, stream=stream, replica=True)
        undo.push(pstate.store.delete, "vm", vm.id)
        pstate.save_vm(vm)
    return {"token": token, "pool": pstate.pool.name, "stream": stream}


@receive_verb("vm.receive.replica.pass")
async def receive_pass(rctx: ReceiveContext, args: dict) -> dict:
    """One pass on stdin: a btrfs stream (from ``parent``), or the whole tar."""
    async with _held_replica(rctx, args, "vm.receive.replica.pass") as (pstate, vm, slog):
        step = slog.next_pass
        next_stage(DESTINATION, slog.stage, step, f"VM {vm.id}")
        recv = pstate.pool.received("vm", vm.id)
        if slog.stream == "btrfs":
            await btrfs_received(rctx, pstate, vm, step, recv, args)
            return {"stage": str(step)}
        if rctx.stdin is None:
            raise OsctlError(INVALID, "the pass comes on stdin")
        backend = backend_for(pstate.pool)
        new = recv.with_name(recv.name + ".new")
        await backend.destroy(new)
        async with Undo() as undo:
            undo.push(backend.destroy, new)
            await backend.create(new)
            await untar(VmFiles(new), rctx.stdin, with_disk=True)
        _settled(recv)
        old = recv.with_name(recv.name + ".old")  # the last good copy, until the new one is said
        await backend.destroy(old)
        if recv.exists():
            os.rename(recv, old)
        os.rename(new, recv)
        save_log(pstate, vm, slog.after(step, taken=pass_taken(args)))
        await leftover_passes(backend.destroy(old), vm)  # the pass is said: the sender goes on
    return {"stage": str(step)}


@receive_verb("vm.receive.replica.cancel")
async def receive_cancel(rctx: ReceiveContext, args: dict) -> dict:
    """The staged replica and every pass received go."""
    node = rctx.node
    async with _held_replica(rctx, args, "vm.receive.replica.cancel") as (pstate, vm, _):
        await node.remove_vm(pstate, vm)  # with every pass received
    return {"id": vm.id, "cancelled": True}
