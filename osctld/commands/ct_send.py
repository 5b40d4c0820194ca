"""Containers between nodes: ``ct send`` and its stages on the source, the
``ct.receive.*`` verbs they call on the destination (over the SSH channel,
``transfer/``).

config: the destination registers a *staged* container (its user with the
same map, or a new block where that would overlap; its group; its config;
its netifs with interconnects of the destination's range, their addresses
checked free there) and names the transfer by a token. rootfs: the full
copy while it runs. sync: incrementals while it runs (repeatable). state:
the source stops it (its routes and veths go), sends the last incremental,
and the destination takes it over (stopped, or started). cleanup: the
source deletes its copy (``clone``: keeps it). cancel, before state: the
destination drops the staged container and all it received; the source
is as it was. Each stage is saved in the send log (``model/sendlog.py``) of
both ends' configs, so either daemon may restart between stages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Awaitable

from osctl.protocol import CONFLICT, DENIED, EXISTS, INVALID, NOT_FOUND, UNSUPPORTED, OsctlError
from osctl_convert import fixups

from ..cluster import decide
from ..cluster.errors import EtcdError, EtcdUnavailable
from ..distconfig.rootfs import RootFS
from ..model.container import Container
from ..model.lifecycle import Event, State
from ..model.mount import Mount
from ..model.naming import check_name
from ..model.netif import ROUTED
from ..model.pool import IDMAP_CHOWN
from ..model.sendlog import DESTINATION, SOURCE, SendLog, Stage, Step, next_stage
from ..model.vm import VM
from ..storage import backend_for
from ..storage.base import SUBDATASETS, Backend
from ..storage.zfs import ZfsBackend
from ..transfer import channel, copies, streams
from ..transfer.receive_verbs import ReceiveContext, receive_verb
from ..undo import Undo
from . import Context, Target, command, hold_instance, user as user_cmd
from .instance import creating

log = logging.getLogger(__name__)
STOP_TIMEOUT = 60


# --- where things are ---------------------------------------------------------------

def _rsync_tree(pstate, backend, ct_id: str) -> Path:
    """Where rsync writes on the destination: on zfs the rootfs itself, in
    the container's own dataset (a tree renamed into place would be a
    directory of the pool's dataset, with no quota or snapshots); else a
    tree in ``recv/``, renamed into place at the take-over."""
    if isinstance(backend, ZfsBackend):
        return pstate.pool.rootfs(ct_id)
    return pstate.pool.received("ct", ct_id) / "rootfs"


async def _drop_sent(backend, pstate, ct_id: str) -> None:
    """The source's snapshots of every pass: its pool's own (zfs) or in ``send/``."""
    await backend.send_drop(pstate.pool.rootfs(ct_id))
    await backend.destroy_all(pstate.pool.sent("ct", ct_id))


def save_log(pstate, inst: Container | VM, log_: SendLog | None) -> None:
    """The container (or VM: its replica) with its send log as ``log_``: in
    memory only once written."""
    before, inst.send_log = inst.send_log, log_
    try:
        pstate.save_instance(inst)
    except BaseException:
        inst.send_log = before
        raise


# --- the source ------------------------------------------------------------------

def _sending(ct: Container, step: Step) -> SendLog:
    """The container's source send log, once ``step`` may come now."""
    what = f"container {ct.id}"
    if ct.send_log is None or ct.send_log.role != SOURCE:
        next_stage(SOURCE, None, step, what)  # says what may come
        raise OsctlError(CONFLICT, f"{what} is being received, not sent")
    next_stage(SOURCE, ct.send_log.stage, step, what)
    return ct.send_log


async def _rsync_size(path: Path) -> int:
    """Bytes under ``path`` (du), for the destination's free-space check."""
    proc = await asyncio.create_subprocess_exec("du", "-sxb", str(path), stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate()
    try:
        return int(out.split()[0])
    except (IndexError, ValueError):
        return 0


@command("ct.send.config", mutating=True, target=Target("ct", "id"))
async def send_config(ctx: Context, id: str, dest: str, as_id: str | None = None,
                      to_pool: str | None = None) -> dict:
    """Register the container at ``dest`` (``host[:port]``) as a staged one
    (``as_id``, in ``to_pool``): its user, group, config and netifs; refused
    there if its id or addresses are taken or the pool lacks room. Nothing
    is copied yet."""
    node = ctx.node
    pstate, ct = node.registry.ct(id)
    channel.split_dest(dest)
    if as_id is not None:
        check_name("container", as_id)
    if pstate.pool.idmap == IDMAP_CHOWN:
        raise OsctlError(UNSUPPORTED, f"pool {pstate.pool.name} stores shifted IDs (chown): "
                                      "send from a pool with idmapped mounts")
    async with hold_instance(ctx, ct, "ct.send.config"):
        if ct.send_log is not None:
            raise OsctlError(CONFLICT, f"container {ct.id} is being sent or received already "
                                       f"({ct.send_log.role}, stage {ct.send_log.stage})")
        if ct.state not in (State.STOPPED, State.RUNNING):
            raise OsctlError(CONFLICT, f"container {ct.id} is {ct.state}: it cannot be sent")
        next_stage(SOURCE, None, Step.CONFIG)
        user = pstate.users[ct.user]
        ctx.progress({"step": "config", "message": f"registering {ct.id} at {dest}"})
        config = {k: v for k, v in ct.to_dict().items()
                  if k not in ("id", "send_log", "deletion", "restart_pending")}
        reply = await channel.call(node, dest, "ct.receive.config", {
            "id": as_id or ct.id, "pool": to_pool, "config": config,
            "user": {"name": user.name, "uid_map": [str(e) for e in user.uid_map],
                     "gid_map": [str(e) for e in user.gid_map]},
            "size": await _rsync_size(pstate.pool.rootfs(ct.id)),
            "stream": backend_for(pstate.pool).send_stream,
            "rootfs": str(pstate.pool.rootfs(ct.id)),  # where its own datasets are mounted
        })
        try:
            save_log(pstate, ct, SendLog(role=SOURCE, token=reply["token"], stage=Stage.CONFIG,
                                      peer=dest, as_id=as_id or ct.id, pool=reply["pool"],
                                      stream=reply["stream"]))
        except BaseException:
            with contextlib.suppress(OsctlError):
                await channel.call(node, dest, "ct.receive.cancel", {"token": reply["token"]})
            raise
    return {**ct.public(), "token": reply["token"]}


async def _pass(ctx: Context, pstate, ct: Container, slog: SendLog, step: Step, live: bool,
                handover: dict | None = None) -> tuple[SendLog, dict, int]:
    """One copy of the rootfs to the destination (full at ``rootfs``, else
    incremental from the last one), its stage saved on both ends; the
    destination's reply and the bytes the stream took (``Meter.sent``). The
    last pass (not ``live``) is saved there by its take-over; a btrfs or zfs
    stream carries the take-over itself (``handover``): one SSH session
    less in the downtime."""
    node = ctx.node
    meter = streams.Meter(ctx.progress, str(step))
    rootfs = pstate.pool.rootfs(ct.id)
    if slog.stream == "rsync":
        taken = time.time()
        await streams.rsync_send(node, slog.peer, slog.token, rootfs, meter, live)
        reply = {}
        if live:
            reply = await channel.call(node, slog.peer, "ct.receive.synced",
                                       {"token": slog.token, "taken": taken})
        done = slog.after(step, taken=taken)
    else:
        backend = backend_for(pstate.pool)
        if slog.stream == "zfs":
            assert isinstance(backend, ZfsBackend)
            name, taken, reply = await _zfs_pass(node, backend, rootfs, slog, handover, meter)
        else:
            name, taken, reply = await btrfs_pass(node, pstate, rootfs, pstate.pool.sent("ct", ct.id), slog,
                                                  "ct.receive.rootfs",
                                                  {"token": slog.token, "state": handover}, meter)
        done = slog.after(step, snapshot=name, taken=taken)
    assert done is not None
    save_log(pstate, ct, done)
    return done, reply, meter.sent


async def btrfs_pass(node, pstate, src: Path, snaps: Path, slog: SendLog, verb: str, args: dict,
                     meter: streams.Meter,
                     still: contextlib.AbstractAsyncContextManager | None = None) -> tuple[str, float, dict]:
    """A read-only snapshot of ``src`` in ``snaps`` (taken within ``still``:
    a VM's guest paused), streamed to receive verb ``verb`` at the peer
    (``args`` and the snapshot's name, parent and time), incrementally from
    the last one, which goes once it is sent. Returns the snapshot's name,
    when it was taken, and the verb's reply."""
    backend = backend_for(pstate.pool)
    snap, parent = snaps / _next_snapshot(slog), (snaps / slog.snapshot if slog.snapshot else None)
    async with Undo() as undo:
        async with still or contextlib.nullcontext():
            taken = time.time()
            await backend.snapshot(src, snap)
        undo.push(backend.destroy, snap)
        reply = await streams.send_stream(node, slog.peer, verb,
                                          {**args, "snapshot": snap.name, "parent": slog.snapshot,
                                           "taken": taken}, streams.btrfs_writer(snap, parent), meter)
    if parent is not None:
        await backend.destroy(parent)
    return snap.name, taken, reply


def _next_snapshot(slog: SendLog) -> str:
    """The name of a send's next pass's snapshot: s1, s2, ..."""
    return f"s{int(slog.snapshot[1:]) + 1}" if slog.snapshot else "s1"


async def _zfs_pass(node, backend: ZfsBackend, rootfs: Path, slog: SendLog, handover: dict | None,
                    meter: streams.Meter) -> tuple[str, float, dict]:
    """One atomic snapshot of the container's datasets, each streamed (from
    the last pass's snapshot where it has one) to the peer's
    ``ct.receive.rootfs`` on one session; the last pass's snapshot goes
    once this one is in. Returns the snapshot's name, when it was taken,
    and the verb's reply."""
    name, taken = _next_snapshot(slog), time.time()
    async with Undo() as undo:
        undo.push(backend.send_drop, rootfs, name)  # made on some datasets when it fails half way
        plan = await backend.send_snapshot(rootfs, name, slog.snapshot)
        meter.size = await backend.send_size(rootfs, name, slog.snapshot, plan)
        reply = await streams.send_stream(
            node, slog.peer, "ct.receive.rootfs",
            {"token": slog.token, "snapshot": name, "parent": slog.snapshot, "state": handover,
             "taken": taken, "datasets": plan},
            partial(backend.send_streams, rootfs, name, slog.snapshot, plan), meter)
    if slog.snapshot is not None:
        await backend.send_drop(rootfs, slog.snapshot)
    return name, taken, reply


@command("ct.send.rootfs", mutating=True, target=Target("ct", "id"))
async def send_rootfs(ctx: Context, id: str) -> dict:
    """The full copy of the rootfs, while the container runs."""
    return await _stage(ctx, id, Step.ROOTFS)


@command("ct.send.sync", mutating=True, target=Target("ct", "id"))
async def send_sync(ctx: Context, id: str) -> dict:
    """What changed since the last copy, while the container runs (repeatable)."""
    return await _stage(ctx, id, Step.SYNC)


async def _stage(ctx: Context, id: str, step: Step) -> dict:
    pstate, ct = ctx.node.registry.ct(id)
    async with hold_instance(ctx, ct, f"ct.send.{step}"):
        _, _, sent = await _pass(ctx, pstate, ct, _sending(ct, step), step, live=True)
    return {**ct.public(), "sent": sent}


@command("ct.send.state", mutating=True, target=Target("ct", "id"))
async def send_state(ctx: Context, id: str, start: bool = True, clone: bool = False) -> dict:
    """Stop the container (its routes and veths go), send the last
    incremental, and have the destination take it over: started there if it
    ran here (``start`` false: left stopped). ``clone``: this one is kept
    and runs on, the destination's copy is left stopped."""
    node = ctx.node
    pstate, ct = node.registry.ct(id)
    async with hold_instance(ctx, ct, "ct.send.state"):
        slog = _sending(ct, Step.STATE)
        was_running = ct.running
        async with Undo() as undo:
            if was_running:
                undo.push(node.containers.start, pstate, ct)
            ctx.progress({"step": "state", "message": f"stopping {ct.id}"})
            await node.containers.stop(ct, STOP_TIMEOUT)
            node.containers.apply(ct, Event.MIGRATE)
            undo.push(node.containers.apply, ct, Event.STAY)
            # The last pass: the state it stopped in (no vanished file is fine
            # now), then the take-over: once it answers, the destination holds
            # the container. A btrfs or zfs stream carries the take-over along.
            handover = {"start": was_running and start and not clone}
            ctx.progress({"step": "state", "message": f"last changes, then {slog.peer} takes it over"})
            if slog.stream != "rsync":
                slog, reply, _ = await _pass(ctx, pstate, ct, slog, Step.SYNC, False, handover)
            else:
                slog, _, _ = await _pass(ctx, pstate, ct, slog, Step.SYNC, live=False)
                reply = await channel.call(node, slog.peer, "ct.receive.state",
                                           {"token": slog.token, **handover})
        final = slog.after(Step.STATE, clone=clone)
        if clone:
            node.containers.apply(ct, Event.STAY)
        save_log(pstate, ct, final)
        if clone and was_running:
            await node.containers.start(pstate, ct)
    return {**ct.public(), "destination": reply}


@command("ct.send.cleanup", mutating=True, target=Target("ct", "id"))
async def send_cleanup(ctx: Context, id: str) -> dict:
    """After state: delete the container here (its user too, if it has no
    other container or VM here); a clone is kept, its send log closed."""
    node = ctx.node
    pstate, ct = node.registry.ct(id)
    backend = backend_for(pstate.pool)
    async with hold_instance(ctx, ct, "ct.send.cleanup"):
        slog = _sending(ct, Step.CLEANUP)
        await _drop_sent(backend, pstate, ct.id)
        if slog.clone:
            save_log(pstate, ct, None)
            return ct.public()
        await node.remove_ct(pstate, ct)
    # Moved, not gone: a cluster's record follows it (osctld/cluster/sync.py).
    node.events.publish("remove", object="ct", pool=ct.pool, id=ct.id, group=ct.group,
                        moved_to=slog.peer, as_id=slog.as_id)
    if not pstate.instances_of(ct.user):
        with contextlib.suppress(OsctlError):  # taken meanwhile: it stays
            await user_cmd.delete(ctx, f"{pstate.pool.name}:{ct.user}")
    return {"id": ct.id, "pool": ct.pool, "deleted": True}


@command("ct.send.cancel", mutating=True, target=Target("ct", "id"))
async def send_cancel(ctx: Context, id: str, local: bool = False) -> dict:
    """Before state: the destination drops the staged container and all it
    received (``local``: only this end is cleaned up, for a destination that
    is gone); the container here is as it was."""
    node = ctx.node
    pstate, ct = node.registry.ct(id)
    async with hold_instance(ctx, ct, "ct.send.cancel"):
        slog = _sending(ct, Step.CANCEL)
        if not local:
            await copies.cancel_at(node, "ct", slog)
        await _drop_sent(backend_for(pstate.pool), pstate, ct.id)
        save_log(pstate, ct, None)
    return ct.public()


@command("ct.send", mutating=True, target=Target("ct", "id"))
async def send(ctx: Context, id: str, dest: str, as_id: str | None = None,
               to_pool: str | None = None, start: bool = True, clone: bool = False) -> dict:
    """Move the container to ``dest``: config, rootfs, one sync, state and
    cleanup in turn. A failure before state cancels (the destination keeps
    nothing); Ctrl-C cancels the same way."""
    await send_config(ctx, id, dest, as_id, to_pool)
    try:
        await send_rootfs(ctx, id)
        await send_sync(ctx, id)
        result = await send_state(ctx, id, start, clone)
    except BaseException:
        with contextlib.suppress(OsctlError):
            await asyncio.shield(send_cancel(ctx, id))
        raise
    await send_cleanup(ctx, id)
    return result["destination"]


# --- the destination ---------------------------------------------------------------

def _arg(args: dict, key: str, kind: type, required: bool = True):
    value = args.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise OsctlError(INVALID, f"argument {key!r} must be {kind.__name__}")
    return value


def pass_taken(args: dict) -> float | None:
    """When the pass's copy was taken, as the source says (a replica's age)."""
    value = args.get("taken")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _transfer(rctx: ReceiveContext, args: dict):
    """The staged container the ``token`` names, sent with this key."""
    token = _arg(args, "token", str)
    for pstate in rctx.node.registry.pools.values():
        for ct in pstate.cts.values():
            if ct.send_log and ct.send_log.role == DESTINATION and ct.send_log.token == token:
                if ct.send_log.peer != rctx.key.name:
                    raise OsctlError(DENIED, f"transfer {token[:8]}... came with another key")
                return pstate, ct
    raise OsctlError(NOT_FOUND, f"no transfer with token {token[:8]}... here")


async def _user(ctx: Context, pstate, spec: dict) -> tuple:
    """The container's user here: the one of that name, or a new one with
    the same map, or with a block of this pool's range if that map is taken
    here. (user, made for this transfer)"""
    name = check_name("user", spec.get("name"))
    if name in pstate.users:
        return pstate.users[name], False
    try:
        try:
            await user_cmd.new(ctx, name, pstate.pool.name, list(spec.get("uid_map") or []),
                               list(spec.get("gid_map") or []))
        except OsctlError as e:
            if e.code != CONFLICT:
                raise
            log.info("user %s: its map is taken here (%s); it gets a new block", name, e.message)
            await user_cmd.new(ctx, name, pstate.pool.name)
    except OsctlError as e:
        # Another container of this user arriving at the same time (an
        # evacuation sends several at once) made it first.
        if e.code == EXISTS and name in pstate.users:
            return pstate.users[name], False
        raise
    return pstate.users[name], True


@receive_verb("ct.receive.config")
async def receive_config(rctx: ReceiveContext, args: dict) -> dict:
    pstate = rctx.node.registry.pool(_arg(args, "pool", str, required=False))
    ct_id = check_name("container", _arg(args, "id", str))
    try:
        ct = Container.from_dict({**_arg(args, "config", dict), "id": ct_id}, pstate.pool.name)
    except (TypeError, KeyError) as e:
        raise OsctlError(INVALID, f"bad container config: {e}") from None
    ct.mounts = datasets_here(ct.mounts, _arg(args, "rootfs", str, required=False),
                              pstate.pool.rootfs(ct_id), backend_for(pstate.pool), args.get("stream"))
    await _drop_stale_copy(rctx, ct_id)  # once what is sent is known to be acceptable
    return await stage(rctx, pstate, ct, _arg(args, "user", dict), _arg(args, "size", int),
                       stream=args.get("stream"))


def datasets_here(mounts: list[Mount], sender_rootfs: str | None, rootfs: Path, backend: Backend,
                  stream: object) -> list[Mount]:
    """``mounts`` with those of the container's own datasets (``ct
    dataset``: on the sender beside its rootfs ``sender_rootfs``) where
    they will be mounted here; the sender's paths would not exist here, or
    be another container's (``--as-id``, another pool). The datasets
    travel only in a zfs stream into a zfs pool (rsync stays in the
    rootfs's filesystem): anything else is refused, before anything is
    made."""
    if sender_rootfs is None:
        return mounts
    theirs = Path(sender_rootfs).parent / SUBDATASETS
    out = []
    for m in mounts:
        src = Path(m.src)
        if src.parent != theirs:
            out.append(m)
        elif stream != "zfs" or backend.send_stream != "zfs":
            raise OsctlError(UNSUPPORTED, f"the container's dataset {src.name} (ct dataset ls) goes "
                                          "only to a zfs pool, from a zfs pool")
        else:
            out.append(replace(m, src=str(backend.subdataset_path(rootfs, src.name))))
    return out


async def _drop_stale_copy(rctx: ReceiveContext, id: str) -> None:
    """In a cluster, a stopped container ``id`` here that was recovered on
    the sending node while this one was gone (``decide.stale_copy``: its
    record places it there and names this node its standby) is removed, so
    that its replica (or the container itself) can come back here: a stale
    copy holds its addresses and id. Only when the sender's copy arrives,
    never at the node's return: until then the operator may look into it.
    What it holds beyond the replica the recovery started from is the data
    the recovery lost (README, High availability). Anything else, and etcd
    out of reach, is left to ``stage``'s refusal (exists)."""
    node = rctx.node
    cluster = node.cluster
    if cluster is None:
        return
    try:
        pstate, old = node.registry.ct(id)
        view = await cluster.store.view()
    except (OsctlError, EtcdUnavailable, EtcdError):
        return
    sender = next((n.name for n in view.nodes.values() if n.address == rctx.peer_ip), None)
    if sender is None or not decide.stale_copy(view.instances.get(f"ct/{id}"), cluster.name, sender):
        return
    async with hold_instance(Context(node=node, op=f"receive:{rctx.key.name}"), old,
                             "ct.receive.config"):
        # Stopped, and no transfer's end here (an old replica's source end is).
        if old.running or old.state != State.STOPPED or \
                (old.send_log is not None and old.send_log.role != SOURCE):
            return
        await node.remove_ct(pstate, old)
    node.events.publish("remove", object="ct", pool=old.pool, id=old.id, group=old.group)
    log.warning("container %s: the stale copy here (recovered on node %s while this node was "
                "gone) is replaced by the one %s sends", id, sender, sender)


async def stage(rctx: ReceiveContext, pstate, ct: Container, user_spec: dict, size: int,
                stream: object = None, origin: str | None = None) -> dict:
    """Register ``ct`` (the sender's config, made here) as a staged
    container of the user ``user_spec`` names, once its id, addresses and
    size fit here: the config stage of every transfer to this node, from an
    osctld node or (``origin``) an OpenVZ one. The rootfs comes as the
    ``stream`` the source offers where this pool has the same kind, else
    by rsync."""
    node = rctx.node
    ctx = Context(node=node, op=f"receive:{rctx.key.name}")
    backend = backend_for(pstate.pool)
    if pstate.pool.idmap == IDMAP_CHOWN:
        raise OsctlError(UNSUPPORTED, f"pool {pstate.pool.name} stores shifted IDs (chown): "
                                      "send to a pool with idmapped mounts")
    free = shutil.disk_usage(pstate.pool.path).free
    if size > free:
        raise OsctlError(CONFLICT, f"pool {pstate.pool.name} has {free >> 20} MiB free; "
                                   f"container {ct.id} holds {size >> 20} MiB")
    if ct.id in pstate.cts:
        raise OsctlError(EXISTS, f"container {ct.id} exists in pool {pstate.pool.name} here")
    pstate.group(ct.group)  # not_found before anything is made
    for n in ct.netifs:  # before anything is made: an address taken here refuses it
        await node.net.check_free(n.held(), n.type == ROUTED)
    token = secrets.token_hex(20)
    stream = backend.send_stream if stream == backend.send_stream else "rsync"
    async with Undo() as undo:
        user, made = await _user(ctx, pstate, user_spec)
        if made:
            undo.push(user_cmd.delete, ctx, f"{pstate.pool.name}:{user.name}")
        ct.user = user.name
        async with creating(ctx, pstate, ct, user, backend.quotas) as inner:
            for n in ct.netifs:  # each held from now on: ct is in the pool's table
                n.index = node.net.allocate()
            inner.push(shutil.rmtree, pstate.pool.ct_dir(ct.id), True)
            ct.send_log = SendLog(role=DESTINATION, token=token, stage=Stage.CONFIG,
                                  peer=rctx.key.name, as_id=ct.id, pool=pstate.pool.name,
                                  stream=stream, user_created=made, origin=origin)
            node.containers.apply(ct, Event.STAGE)
    return {"token": token, "pool": pstate.pool.name, "stream": stream, "id": ct.id}


def _expected_pass(rctx: ReceiveContext, inst: Container | VM, slog: SendLog, args: dict,
                   stream: str) -> tuple[str, str | None, int]:
    """The snapshot a ``stream`` pass brings and its parent, which must be
    the last one received here, and the session's stdin it comes on."""
    snapshot = check_name("snapshot", _arg(args, "snapshot", str))
    parent = _arg(args, "parent", str, required=False)
    if slog.stream != stream or parent != slog.snapshot:
        raise OsctlError(CONFLICT, f"{inst.noun} {inst.id}: expected a {slog.stream} stream from "
                                   f"{slog.snapshot or 'nothing'}")
    if rctx.stdin is None:
        raise OsctlError(INVALID, "the stream comes on stdin")
    return snapshot, parent, rctx.stdin


async def btrfs_received(rctx: ReceiveContext, pstate, inst: Container | VM, step: Step,
                         recv: Path, args: dict) -> None:
    """A btrfs pass on the session's stdin into ``recv``: the snapshot
    ``args`` name, incremental from their ``parent``, which must be the
    last one received here (it goes once the new one is in); the send log
    saved at ``step``."""
    slog = inst.send_log
    assert slog is not None
    snapshot, parent, stdin = _expected_pass(rctx, inst, slog, args, "btrfs")
    backend = backend_for(pstate.pool)
    async with Undo() as undo:
        undo.push(backend.destroy, recv / snapshot)  # what a failed receive left
        await streams.btrfs_receive(stdin, recv)
        save_log(pstate, inst, slog.after(step, snapshot=snapshot, taken=pass_taken(args)))
    if parent is not None:
        await backend.destroy(recv / parent)


@receive_verb("ct.receive.rootfs")
async def receive_rootfs(rctx: ReceiveContext, args: dict) -> dict:
    """A btrfs or zfs pass: the full one, or an incremental from ``parent``."""
    pstate, ct = _transfer(rctx, args)
    slog = ct.send_log
    assert slog is not None
    step = Step.ROOTFS if args.get("parent") is None else Step.SYNC
    next_stage(DESTINATION, slog.stage, step, f"container {ct.id}")
    backend = backend_for(pstate.pool)
    if isinstance(backend, ZfsBackend):  # what a failed pass made, it takes back itself
        snapshot, parent, stdin = _expected_pass(rctx, ct, slog, args, "zfs")
        await backend.receive_streams(
            pstate.pool.rootfs(ct.id), snapshot, parent, _arg(args, "datasets", list), stdin,
            lambda: save_log(pstate, ct, slog.after(step, snapshot=snapshot, taken=pass_taken(args))))
    else:
        await btrfs_received(rctx, pstate, ct, step, pstate.pool.received("ct", ct.id), args)
    handover = args.get("state")
    if isinstance(handover, dict):  # the last one: take the container over now
        return await _take_over(rctx, pstate, ct, handover.get("start") is True)
    return {"stage": str(ct.send_log.stage) if ct.send_log else None}


@receive_verb("ct.receive.rsync")
async def receive_rsync(rctx: ReceiveContext, args: dict) -> dict:
    """rsync's server end (the forced command turned ``rsync --server ...``
    into this), into the tree being received."""
    pstate, ct = _transfer(rctx, args)
    slog = ct.send_log
    assert slog is not None
    if slog.stream != "rsync":
        raise OsctlError(CONFLICT, f"container {ct.id}: expected a {slog.stream} stream")
    next_stage(DESTINATION, slog.stage, slog.next_pass)
    backend = backend_for(pstate.pool)
    tree = _rsync_tree(pstate, backend, ct.id)
    if not tree.exists():
        tree.parent.mkdir(parents=True, exist_ok=True)
        await backend.create(tree)
    await streams.rsync_receive(_arg(args, "argv", list), tree, rctx.stdin, rctx.stdout)
    return {}


@receive_verb("ct.receive.synced")
async def receive_synced(rctx: ReceiveContext, args: dict) -> dict:
    """An rsync pass ended well: its stage is saved."""
    pstate, ct = _transfer(rctx, args)
    slog = ct.send_log
    assert slog is not None
    save_log(pstate, ct, slog.after(slog.next_pass,
                                 taken=pass_taken(args)))
    return {}


@receive_verb("ct.receive.state")
async def receive_state(rctx: ReceiveContext, args: dict) -> dict:
    """The last rsync pass is here: take the container over."""
    pstate, ct = _transfer(rctx, args)
    return await _take_over(rctx, pstate, ct, args.get("start") is True)


async def _take_over(rctx: ReceiveContext, pstate, ct: Container, start: bool) -> dict:
    """The sender's last pass is here: the container is taken over (see
    ``adopt``), and the key it came with is used up if it was single-use."""
    node = rctx.node
    fixed = await adopt(Context(node=node, op=f"receive:{rctx.key.name}"), pstate, ct)
    if rctx.key.single_use:  # its transfer is done: used up
        with contextlib.suppress(OsctlError):
            node.keychain.remove(rctx.key.name)
    return {**await started(node, pstate, ct, start), "fixups": fixed}


async def adopt(ctx: Context, pstate, ct: Container) -> list[str]:
    """The staged container becomes an ordinary stopped one (its rootfs a
    writable snapshot of the last one received, or the received tree; its
    disk quota set again). Also how a standby turns its replica into the
    container when its node died (cluster HA, ``ct.recover``). Returns the
    fix-ups made to a rootfs from an OpenVZ node (none otherwise)."""
    node = ctx.node
    backend = backend_for(pstate.pool)
    recv, rootfs = pstate.pool.received("ct", ct.id), pstate.pool.rootfs(ct.id)
    async with hold_instance(ctx, ct, "ct.receive.state"), Undo() as undo:
        # Read once locked: a cancel or another take-over may have held the lock first.
        slog = ct.send_log
        if slog is None:
            raise OsctlError(CONFLICT, f"container {ct.id} was taken over already: no staged copy")
        next_stage(DESTINATION, slog.stage, Step.STATE, f"container {ct.id}")
        if slog.stream == "btrfs":
            assert slog.snapshot is not None
            await backend.clone(recv / slog.snapshot, rootfs)
            undo.push(backend.destroy, rootfs)
        elif slog.stream == "zfs":  # received in place: its datasets mounted
            assert slog.snapshot is not None and isinstance(backend, ZfsBackend)
            await backend.received(rootfs, slog.snapshot)
            undo.push(backend.umount_tree, backend.ct_dataset(rootfs))
        elif (tree := _rsync_tree(pstate, backend, ct.id)) != rootfs:
            os.rename(tree, rootfs)
            undo.push(os.rename, rootfs, tree)
        fixed = []
        if slog.origin == "vz6":  # what vzctl left that breaks under LXC (osctl_convert.fixups)
            changes = await asyncio.to_thread(fixups.fix, RootFS(rootfs), ct.distribution)
            fixed = [c.line() for c in changes]
        if ct.disk is not None and backend.quotas:
            await backend.set_quota(rootfs, ct.disk)
        node.containers.write_config(pstate, ct)
        node.containers.apply(ct, Event.ADOPT)
        undo.push(node.containers.apply, ct, Event.STAGE)
        save_log(pstate, ct, None)
    await leftover_passes(backend.destroy_all(recv), ct)
    return fixed


async def leftover_passes(removal: Awaitable[None], inst: Container | VM) -> None:
    """Passes removed once what made them useless is recorded (a take-over:
    the send log is gone; a tar pass: the new copy is said): a failure here
    is logged, not raised; else a recovery would say it failed and not
    start what it recovered, and no retry could (no replica is left to
    recover from), or a sender would not go on from a pass its destination
    has recorded."""
    try:
        await removal
    except Exception as e:
        log.error("%s %s:%s taken over; what its transfer left here stays: %s", inst.noun,
                  inst.pool, inst.id, e)


async def started(node, pstate, ct: Container | VM, start: bool) -> dict:
    """Start the taken-over container (or recovered VM) if ``start``: a
    failure is said, not raised (it is here all the same: the operator
    starts it). Not the start verb: the cluster's records, as this node
    last read them, may not yet say that a recovered instance lives here."""
    ok, why = False, None
    if start:
        try:
            await node.driver(ct.kind).start(pstate, ct)
            ok = True
        except OsctlError as e:
            why = e.message
    return {"id": ct.id, "pool": ct.pool, "started": ok, "start_error": why}


@receive_verb("ct.receive.cancel")
async def receive_cancel(rctx: ReceiveContext, args: dict) -> dict:
    """The staged container and all it received go (its user too, if it was
    made for the transfer); a single-use key may be used again."""
    node = rctx.node
    pstate, ct = _transfer(rctx, args)
    ctx = Context(node=node, op=f"receive:{rctx.key.name}")
    async with hold_instance(ctx, ct, "ct.receive.cancel"):
        # Looked up again once locked: a take-over or a recovery (adopt)
        # that held the lock first made it an ordinary container, which a
        # cancel must not delete (NOT_FOUND: there is no transfer any more).
        if _transfer(rctx, args)[1] is not ct:
            raise OsctlError(NOT_FOUND, f"container {ct.id} is no staged copy here any more")
        slog = ct.send_log
        assert slog is not None
        next_stage(DESTINATION, slog.stage, Step.CANCEL, f"container {ct.id}")
        await node.remove_ct(pstate, ct)  # with all it received
    node.events.publish("remove", object="ct", pool=ct.pool, id=ct.id, group=ct.group)
    if slog.user_created and not pstate.instances_of(ct.user):
        try:
            await user_cmd.delete(ctx, f"{pstate.pool.name}:{ct.user}")
        except OsctlError as e:
            log.warning("cancelled transfer of %s: its user %s stays: %s", ct.id, ct.user, e.message)
        # /etc/subuid and /etc/subgid as the users now are, whatever the
        # delete got to (a transient lock failure there left a line behind).
        await node.sync_subids()
    key = node.keychain.keys.get(rctx.key.name)
    if key is not None and key.single_use and key.token == slog.token:
        node.keychain.replace(replace(key, used=False, token=None))
    return {"id": ct.id, "cancelled": True}
