"""Staged deletions worked through: the stages that are due, in order.

``ct del --at`` / ``vm del --at`` only write a schedule (model/deletion.py)
into the instance's config. The daemon does the stages: at start, before the
first request (a node that was down catches up, each stage in its order), and
then on a timer (``watch``). Each stage is marked reached in the same atomic
write as the change it makes, then announced: a ``deletion`` event and a
line in the pool's history. A kill at any point leaves a stage either not
done (it is done at the next look) or done and marked, never done twice; the
hard stage, which spans several steps, is marked first and finished at the
next look if a kill cut it short.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING

from .locks import ct_key, pool_key, vm_key
from .model.container import Container
from .model.deletion import HARD, PREPARE, RECYCLE, SOFT, Deleted
from .model.lifecycle import Event, check
from .model.vm import VM
from .state import PoolState
from .transfer import copies

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger(__name__)
# How long a container's init may take to halt at the soft stage before it is killed.
STOP_TIMEOUT = 60


def announce(node: Node, pool: str, kind: str, id: str, stage: str, **data) -> None:
    """A deletion's step as an event and a history line of its pool."""
    node.events.publish("deletion", object=kind, pool=pool, id=id, stage=stage, **data)
    node.history.write(pool, {"cmd": f"{kind}.deletion.{stage}", "args": {"id": id, **data},
                              "uid": 0, "pid": os.getpid(), "result": "ok", "by": "osctld"})


async def run_due(node: Node) -> None:
    """Every stage due now, of every pool; one that fails is logged and
    tried again at the next look."""
    now = time.time()
    for pstate in list(node.registry.pools.values()):
        servers = pstate.all_instances()
        for server in servers:
            if server.deletion and (server.deletion.due_now(now) or server.deletion.has(HARD)):
                await _locked(node, pstate, server.kind, server.id, _advance, node, pstate, server)
        for gone in list(pstate.deleted.values()):
            if gone.deletion.due_now(now):
                await _locked(node, pstate, gone.kind, gone.id, _advance_deleted, node, pstate, gone)


async def _locked(node: Node, pstate: PoolState, kind: str, id: str, work, *args) -> None:
    key = vm_key if kind == "vm" else ct_key
    what = f"deletion of {kind} {pstate.pool.name}:{id}"
    try:
        async with node.locks.hold(pool_key(pstate.pool.name), what, shared=True), \
                node.locks.hold(key(pstate.pool.name, id), what):
            if node.registry.pools.get(pstate.pool.name) is pstate:  # not exported meanwhile
                await work(*args)
    except Exception as e:
        log.error("%s: %s", what, e)


async def _advance(node: Node, pstate: PoolState, server: Container | VM) -> None:
    """The due stages of an instance that still has its config, in order."""
    kind = server.kind
    table = pstate.vms if kind == "vm" else pstate.cts
    if table.get(server.id) is not server or server.deletion is None:
        return  # deleted or cancelled while we waited for its lock
    deletion = server.deletion
    if deletion.has(HARD):  # a kill cut the hard stage short: finish it
        await _hard(node, pstate, server)
        return
    for stage in deletion.due_now(time.time()):
        if stage == PREPARE:
            _mark(pstate, server, PREPARE)
        elif stage == SOFT:
            await _soft(node, pstate, server)
        elif stage == HARD:
            _mark(pstate, server, HARD)  # first: a kill from here on is finished at the next look
            await _hard(node, pstate, server)
        announce(node, pstate.pool.name, kind, server.id, stage, at=deletion.at)
        if stage == HARD:
            return


def _mark(pstate: PoolState, server: Container | VM, stage: str) -> None:
    """Mark ``stage`` reached in the instance's config (one atomic write,
    with whatever else changed on it); a failed write takes the mark off again."""
    assert server.deletion is not None
    server.deletion.reached[stage] = time.time()
    try:
        pstate.save_instance(server)
    except BaseException:
        del server.deletion.reached[stage]
        raise


async def _soft(node: Node, pstate: PoolState, server: Container | VM) -> None:
    """Stop it and keep it as it is (config, disks, addresses), not startable.
    Saved soft-deleted before it is held so: a kill in between is the same."""
    driver = node.driver(server.kind)
    driver.keep_stopped(pstate, server)  # a VM: not started again with the daemon
    await driver.stop(server, node.config.vm.stop_timeout if server.kind == "vm" else STOP_TIMEOUT)
    check(f"{server.noun} {server.id}", server.state, Event.SOFT_DELETE)
    _mark(pstate, server, SOFT)
    driver.apply(server, Event.SOFT_DELETE)


async def _hard(node: Node, pstate: PoolState, server: Container | VM) -> None:
    """Free what ``ct del`` / ``vm del --force`` free, the copy of a send or
    replica at another node too, keeping the name (a ``Deleted`` record,
    written before the config goes) until recycle."""
    assert server.deletion is not None
    pstate.save_deleted(Deleted(server.kind, server.id, server.pool, server.user, server.deletion))
    if server.running:  # started by hand since: it goes all the same
        await node.driver(server.kind).stop(server, 0, kill=True)
    await copies.take_down(node, server)  # a replica made since it was scheduled too
    if isinstance(server, VM):
        await node.remove_vm(pstate, server)
    else:
        await node.remove_ct(pstate, server)
    node.events.publish("remove", object=server.kind, pool=server.pool, id=server.id, group=server.group)


async def _advance_deleted(node: Node, pstate: PoolState, gone: Deleted) -> None:
    """The stages after hard: purge (nothing of an instance is kept elsewhere
    on this node yet: no snapshots or backups), then recycle (the name is free)."""
    if pstate.deleted.get((gone.kind, gone.id)) is not gone:
        return
    for stage in gone.deletion.due_now(time.time()):
        if stage == RECYCLE:
            pstate.forget_deleted(gone)
        else:
            gone.deletion.reached[stage] = time.time()
            pstate.save_deleted(gone)
        announce(node, pstate.pool.name, gone.kind, gone.id, stage, at=gone.deletion.at)


async def watch(node: Node) -> None:
    """Look for due stages every ``deletion.check_every`` seconds, or sooner
    when one is due sooner."""
    every = node.config.deletion.check_every
    while True:
        nexts = [d.next_due() for d in _schedules(node)]
        soonest = min((t for t in nexts if t is not None), default=time.time() + every)
        await asyncio.sleep(max(0.05, min(every, soonest - time.time())))
        try:
            await run_due(node)
        except Exception:
            log.exception("staged deletions")


def _schedules(node: Node):
    for pstate in node.registry.pools.values():
        for server in pstate.all_instances():
            if server.deletion:
                yield server.deletion
        for gone in pstate.deleted.values():
            yield gone.deletion

