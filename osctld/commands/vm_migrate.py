"""Moving a VM to another node: ``vm.migrate`` here, ``vm.receive.*`` there.

The destination's steps are receive verbs, called through the SSH channel
(``transfer/channel.py``) with this node's send key:

- ``vm.receive.prepare``: the destination registers the VM **staged** (its
  user and group must be there; its addresses and routes free there, and, for
  a live move, the same interconnect /30, which the running guest keeps) and
  takes its files from the stream on stdin (a tar: the kernel, initramfs and
  command line; the disk too when the VM is stopped). For a live move it
  makes the disk at the same size and starts the incoming QEMU, listening on
  its own address towards the sender (runtime/vm_migrate.py); the reply
  names the ports. A token names the transfer.
- ``vm.receive.finish``: live, the guest resumes there (its addresses routed
  there first); stopped, the VM becomes an ordinary stopped one.
- ``vm.receive.abort``: the staged VM and everything received go.

The source holds the VM's lock throughout; the transfer is recorded in the
VM's config on both sides (``VmTransfer``). A failure or a cancel at any
point aborts the destination and leaves the VM where it was, running if it
ran; on success the source's QEMU quits (its taps, routes and cgroup go)
and the VM is deleted here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from dataclasses import dataclass, replace
from typing import AsyncIterator, Callable

from osctl.protocol import CONFLICT, EXISTS, INTERNAL, INVALID, NOT_FOUND, OsctlError

from ..locks import instance_key, pool_key
from ..model.lifecycle import Event
from ..model.vm import IN, OUT, RUNNING, STAGED, STOPPED, VM, VmTransfer
from ..proc import finish
from ..runtime import vm_migrate as migration
from ..runtime.vmimage import CMDLINE, INITRD, KERNEL, VmFiles
from ..storage import backend_for
from ..transfer import channel, streams
from ..transfer.receive_verbs import ReceiveContext, receive_verb
from ..undo import Undo
from . import Context, Target, command, hold_instance

log = logging.getLogger(__name__)
BOOT_FILES = (KERNEL, INITRD, CMDLINE)
PROGRESS_EVERY = 1.0  # seconds between progress reports within a step


@command("vm.migrate", mutating=True, target=Target("vm", "id"))
async def migrate(ctx: Context, id: str, dest: str, to_pool: str | None = None) -> dict:
    """Move VM ``id`` to the node at ``dest`` (``host[:port]``, which has
    this node's send key; ``to_pool``: its pool there, else its default).
    A running VM moves live: its disk mirrored, its RAM migrated within the
    node's ``vm.migrate_downtime``, its addresses moved; a stopped one by
    copying its files. Afterwards it is gone from here; on failure it stays
    as it was and nothing is left there."""
    node = ctx.node
    channel.split_dest(dest)
    pstate, vm = node.registry.vm(id)
    async with hold_instance(ctx, vm, "vm.migrate"):
        if vm.state not in (RUNNING, STOPPED):
            raise OsctlError(CONFLICT, f"VM {vm.id} is {vm.state}: only a running or a stopped "
                                       "VM moves")
        if vm.send_log is not None:  # (a replica held here is staged: refused above)
            raise OsctlError(CONFLICT, f"VM {vm.id} has a replica at {vm.send_log.peer}: drop it "
                                       "first (osctl vm drop-replica)")
        if vm.running and vm.net_pending:
            raise OsctlError(CONFLICT, f"VM {vm.id}'s netifs changed since it started: restart "
                                       "it first (the guest moves with the network it runs)")
        live = vm.running
        progress = _every(ctx.progress, PROGRESS_EVERY)
        target = Destination(ctx, progress, dest, vm, VmFiles(pstate.pool.vm_dir(vm.id)), to_pool,
                             secrets.token_hex(16), vm.running_cores, vm.running_memory)
        vm.transfer = VmTransfer(OUT, dest, live, target.token)
        pstate.save_vm(vm)
        try:
            if live:
                tuning = migration.Tuning(downtime_limit=node.config.vm.migrate_downtime)
                figures = await node.vms.send_live(vm, target, tuning, progress)
            else:
                figures = await _send_stopped(node, vm, target)
        except BaseException:
            vm.transfer = None
            pstate.save_vm(vm)
            raise
        await node.remove_vm(pstate, vm)
    # Moved, not gone: a cluster's record follows it (osctld/cluster/sync.py).
    node.events.publish("remove", object="vm", pool=vm.pool, id=vm.id, group=vm.group,
                        moved_to=dest, as_id=vm.id)
    return {"id": vm.id, "pool": vm.pool, "dest": dest, "live": live, **figures}


async def _send_stopped(node, vm: VM, target: "Destination") -> dict:
    """A stopped VM: its files streamed (the disk sparse), then taken over
    there (also if only the reply to that was lost: the abort says so)."""
    node.vms.apply(vm, Event.MIGRATE)
    arrived = False

    async def drop() -> None:
        nonlocal arrived
        arrived = not await target.abort()

    try:
        async with Undo() as undo:
            undo.push(drop)
            await target.copy()
            await target.resume()
    except BaseException:
        if not arrived:
            node.vms.apply(vm, Event.STAY)
            raise
    return {"bytes": target.sent}


@dataclass
class Destination:
    """The destination node as the source's sequence sees it (a ``Target``)."""

    ctx: Context
    progress: Callable[[dict], None]
    dest: str
    vm: VM
    files: VmFiles
    pool: str | None
    token: str
    # What its QEMU runs with (the incoming one must be the same).
    running_cores: int | None
    running_memory: int | None
    sent: int = 0

    def _args(self, **more) -> dict:
        return {"id": self.vm.id, "token": self.token, "pool": self.pool, **more}

    async def _prepare(self, running: dict | None, names: list[str]) -> dict:
        meter = streams.Meter(self.progress, "files")

        def sent(n: int) -> None:
            self.sent = n
            meter(n)

        async with tar(self.files, names) as stream:
            return await channel.call(self.ctx.node, self.dest, "vm.receive.prepare",
                                      self._args(vm=self.vm.to_dict(), running=running),
                                      stdin=stream, progress=sent)

    async def prepare(self) -> migration.Endpoints:
        """Live: the boot files there, and the incoming QEMU sized as this one runs."""
        reply = await self._prepare({"cores": self.running_cores,
                                     "memory": self.running_memory,
                                     "interconnect": self.ctx.node.config.net.interconnect},
                                    list(BOOT_FILES))
        return migration.Endpoints.from_dict(reply.get("endpoints"))

    async def copy(self) -> None:
        """Stopped: every file there, the disk too."""
        await self._prepare(None, [*BOOT_FILES, self.files.disk.name])

    async def resume(self) -> None:
        await channel.call(self.ctx.node, self.dest, "vm.receive.finish", self._args())

    async def abort(self) -> bool:
        """False if the guest runs there already (a conflict says so); else
        best effort: a destination that never registered the VM says not
        found, one that cannot be reached keeps a staged VM until told."""
        try:
            await channel.call(self.ctx.node, self.dest, "vm.receive.abort", self._args())
        except OsctlError as e:
            if e.code == CONFLICT:
                return False
            if e.code != NOT_FOUND:
                log.warning("VM %s: aborting the transfer at %s: %s", self.vm.id, self.dest, e)
        return True


def _every(progress: Callable[[dict], None], seconds: float) -> Callable[[dict], None]:
    """``progress`` told of each new step, and within a step at most every ``seconds``."""
    step: list = [None]
    at = [0.0]

    def tell(data: dict) -> None:
        now = time.monotonic()
        if data.get("step") != step[0] or now - at[0] >= seconds:
            step[0], at[0] = data.get("step"), now
            progress(data)
    return tell


@contextlib.asynccontextmanager
async def tar(files: VmFiles, names: list[str]) -> AsyncIterator[int]:
    """A tar of ``names`` in the VM's directory (holes kept as holes), as the
    read end of a pipe; the tar must have succeeded when the block ends."""
    r, w = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            "tar", "--sparse", "-C", str(files.dir), "-cf", "-", "--", *names,
            stdin=asyncio.subprocess.DEVNULL, stdout=w, stderr=asyncio.subprocess.PIPE)
    finally:
        os.close(w)
    try:
        yield r
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise OsctlError(INTERNAL, f"tar of the VM's files failed: {err.decode().strip()}")
    finally:
        os.close(r)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# --- the destination -------------------------------------------------------------------------


def _text(args: dict, name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value:
        raise OsctlError(INVALID, f"{name} must be a non-empty string")
    return value


def _staged(rctx: ReceiveContext, args: dict):
    """The staged VM of the transfer ``args`` name (its id, pool and token)."""
    pool = args.get("pool")
    pstate, vm = rctx.node.registry.vm(f"{pool}:{_text(args, 'id')}" if pool else _text(args, "id"))
    t = vm.transfer
    if t is None or t.direction != IN or not secrets.compare_digest(t.token, _text(args, "token")):
        raise OsctlError(NOT_FOUND, f"VM {vm.id} is not being received with this token")
    return pstate, vm


@contextlib.asynccontextmanager
async def held(rctx: ReceiveContext, vm: VM, what: str) -> AsyncIterator[None]:
    locks = rctx.node.locks
    async with locks.hold(pool_key(vm.pool), what, shared=True), \
            locks.hold(instance_key("vm", vm.pool, vm.id), what):
        yield


def _sized(vm: VM, running: dict) -> VM:
    """The VM as its source runs it (cores and memory fixed for its QEMU's life)."""
    try:
        return replace(vm, cores=int(running["cores"]), memory=int(running["memory"]))
    except (KeyError, TypeError, ValueError):
        raise OsctlError(INVALID, "running must give the source's cores and memory") from None


def received_vm(rctx: ReceiveContext, args: dict) -> tuple:
    """The pool ``args`` name here (or the default) and the VM config they
    carry (``vm``, of VM ``id``), as nothing of this node's yet: no
    transfer, deletion or replica of the source's."""
    pstate = rctx.node.registry.pool(args.get("pool") or None)
    if not isinstance(args.get("vm"), dict):
        raise OsctlError(INVALID, "vm must be the VM's config")
    try:
        vm = VM.from_dict({**args["vm"], "deletion": None, "transfer": None, "send_log": None},
                          pstate.pool.name)
    except (KeyError, TypeError, ValueError) as e:
        raise OsctlError(INVALID, f"not a VM config: {e}") from None
    if vm.id != _text(args, "id"):
        raise OsctlError(INVALID, f"the config is of VM {vm.id}, not {args['id']}")
    return pstate, vm


async def reserve(node, pstate, vm: VM, live: bool, undo: Undo) -> None:
    """Register ``vm`` staged in ``pstate``'s table (the id, quota and
    netifs' addresses and indices held from now on; ``undo`` gives them
    back), once its id is free, its user and group are here, its quota
    allows it and its addresses are free (see ``_netifs_free``)."""
    table = pstate.vms
    if vm.id in table:
        raise OsctlError(EXISTS, f"VM {vm.id!r} exists in pool {pstate.pool.name}")
    pstate.check_name_free("vm", "VM", vm.id)
    if vm.user not in pstate.users:
        raise OsctlError(NOT_FOUND, f"user {vm.user} does not exist in pool "
                                    f"{pstate.pool.name} here: create it first")
    pstate.group(vm.group)
    pstate.check_quota(vm)
    await _netifs_free(node, vm, live)
    table[vm.id] = vm
    undo.push(table.pop, vm.id)
    node.vms.apply(vm, Event.STAGE)


@receive_verb("vm.receive.prepare")
async def receive_prepare(rctx: ReceiveContext, args: dict) -> dict:
    """Register the VM staged, take its files from stdin, and for a live
    move start its incoming QEMU; nothing is left if a step fails."""
    node = rctx.node
    pstate, vm = received_vm(rctx, args)
    token = _text(args, "token")
    running = args.get("running")
    if running is not None and not isinstance(running, dict):
        raise OsctlError(INVALID, "running must be the source's cores, memory and interconnect")
    live = running is not None
    sized = vm
    if running is not None:
        sized = _sized(vm, running)
        if running.get("interconnect") != node.config.net.interconnect:
            raise OsctlError(CONFLICT, f"the interconnect range here is "
                                       f"{node.config.net.interconnect}, not "
                                       f"{running.get('interconnect')}: a running VM keeps its "
                                       "interconnect address; move it stopped")
    if rctx.stdin is None:
        raise OsctlError(INVALID, "vm.receive.prepare reads the VM's files on stdin")
    vm.transfer = VmTransfer(IN, rctx.peer_ip, live, token)
    files = VmFiles(pstate.pool.vm_dir(vm.id))
    backend = backend_for(pstate.pool)
    async with held(rctx, vm, "vm.receive.prepare"), Undo() as undo:
        await reserve(node, pstate, vm, live, undo)
        undo.push(backend.destroy, files.dir)
        await backend.create(files.dir)
        await untar(files, rctx.stdin, with_disk=not live)
        if live:
            with open(files.disk, "wb") as f:
                f.truncate(vm.disk)
        undo.push(pstate.store.delete, "vm", vm.id)
        pstate.save_vm(vm)
        reply: dict = {"token": token}
        if live:
            undo.push(node.vms.drop_incoming, vm)
            host = await node.net.own_address(rctx.peer_ip)
            reply["endpoints"] = (await node.vms.receive_live(pstate, vm, sized, host)).to_dict()
    return reply


async def _netifs_free(node, vm: VM, live: bool) -> None:
    """Its addresses and routes free here (refused before anything is made);
    live, the same interconnect /30 free as well, else new indices."""
    used = {n.index for _, n in node.net.holders()}
    for n in vm.netifs:
        await node.net.check_free(n.held(), True, own=n)
        if not live:
            n.index = node.net.allocate(used)
        elif n.index in used:
            raise OsctlError(CONFLICT, f"netif {n.name}'s interconnect {node.net.interconnect(n)} "
                                       "is taken here: a running VM keeps its interconnect "
                                       "address; move it stopped")
        used.add(n.index)


async def untar(files: VmFiles, stdin: int, with_disk: bool) -> None:
    """The VM's files from the tar on ``stdin``: those named, nothing else."""
    names = [*BOOT_FILES, *([files.disk.name] if with_disk else [])]
    proc = await asyncio.create_subprocess_exec(
        "tar", "-x", "--no-same-owner", "--no-same-permissions", "-C", str(files.dir), "-f", "-",
        "--", *names, stdin=stdin, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    _, err = await finish(proc)
    if proc.returncode != 0:
        raise OsctlError(INVALID, f"the VM's files did not come: {err.decode().strip()}")
    for name in names:
        if not (files.dir / name).is_file() or (files.dir / name).is_symlink():
            raise OsctlError(INVALID, f"the VM's files came without {name}")


# The finish calls waiting for their guest, by VM (an abort cancels one), and
# the tokens of the transfers that arrived since the daemon started (a late
# abort of one is told that the guest runs here).
_waiting: dict[tuple[str, str], asyncio.Task] = {}
_arrived: set[str] = set()


async def stop_waiting(vm: VM) -> None:
    """Cancel a finish call that waits for ``vm``'s guest (it holds its lock)."""
    waiting = _waiting.get((vm.pool, vm.id))
    if waiting is not None:
        waiting.cancel()
        await asyncio.wait([waiting])


@receive_verb("vm.receive.finish")
async def receive_finish(rctx: ReceiveContext, args: dict) -> dict:
    """The VM is here: live, the guest resumes here once it is all here (the
    call is made as the RAM migration starts); stopped, it is an ordinary
    stopped VM."""
    node = rctx.node
    pstate, vm = _staged(rctx, args)
    key = (vm.pool, vm.id)
    task = asyncio.current_task()
    assert task is not None
    _waiting[key] = task
    try:
        async with held(rctx, vm, "vm.receive.finish"):
            if vm.transfer.live:
                await node.vms.arrive(vm)
            else:
                node.vms.apply(vm, Event.ADOPT)
            _arrived.add(vm.transfer.token)
            vm.transfer = None
            pstate.save_vm(vm)
    finally:
        if _waiting.get(key) is task:
            del _waiting[key]
    node.events.publish("add", object="vm", pool=vm.pool, id=vm.id, group=vm.group)
    return {"id": vm.id, "pool": vm.pool, "state": vm.state}


@receive_verb("vm.receive.abort")
async def receive_abort(rctx: ReceiveContext, args: dict) -> dict:
    """The staged VM goes, with its incoming QEMU and whatever was received
    (a finish waiting for it is cancelled first); a conflict if the guest
    runs here already."""
    node = rctx.node
    if _text(args, "token") in _arrived:
        raise OsctlError(CONFLICT, f"VM {args.get('id')} arrived here already")
    pstate, vm = _staged(rctx, args)
    await stop_waiting(vm)
    async with held(rctx, vm, "vm.receive.abort"):
        if vm.state != STAGED:
            raise OsctlError(CONFLICT, f"VM {vm.id} is {vm.state}: it arrived already")
        await node.vms.drop_incoming(vm)
        await node.remove_vm(pstate, vm)
    return {"id": vm.id, "pool": vm.pool}
