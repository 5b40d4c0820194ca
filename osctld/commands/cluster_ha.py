"""What a cluster node does for maintenance and high availability: move an
instance to another node, fence itself, keep replicas, recover a dead
node's instances (issue 15; the decisions are ``cluster/decide.py``'s, the
etcd side ``cluster/``'s).

Moving: a container by ``ct send`` (its replica dropped first: a send log
holds one transfer), a VM by ``vm migrate`` (live while it runs).

Fencing (Proxmox's self-fencing, with a lease instead of a watchdog): a node
that cannot refresh its lease kills its HA instances at once, without
waiting for their locks (a replication pass may hold one for long), so that
they are down before the leader may start them elsewhere: the lease's TTL
plus the fencing margin after the last good refresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace
from typing import Awaitable, Callable, Iterable, Protocol

from osctl.protocol import OsctlError

from ..model.cluster import ClusterView, InstanceRecord
from . import Context
from .ct_replica import drop, replicate
from .ct_send import send
from .vm_migrate import migrate

log = logging.getLogger(__name__)


async def move(ctx: Context, kind: str, id: str, dest: str) -> dict:
    """Move instance ``kind``/``id`` to the node at ``dest``: running, it
    runs there afterwards (a VM live), stopped it stays stopped."""
    if kind == "ct":
        await drop(ctx, id)
        return await send(ctx, id, dest)
    return await migrate(ctx, id, dest)


async def fence(node, instances: Iterable[tuple[str, str]], deadline: float) -> list[str]:
    """Kill the running instances named (``(kind, id)``) at once, all
    together, by ``deadline`` (time.time()); returns what is still not
    stopped then (logged as an error: the leader may start it elsewhere)."""
    todo = []
    for kind, id in instances:
        try:
            pstate, inst = node.registry.instance(kind, id)
        except OsctlError:
            continue
        if inst.running:
            todo.append(inst)

    async def kill(inst) -> None:
        driver = node.driver(inst.kind)
        try:
            driver.keep_stopped(node.registry.pools[inst.pool], inst)
            await driver.stop(inst, 0, kill=True)
        except Exception as e:
            log.error("fencing: %s %s not killed: %s", inst.kind, inst.id, e)

    if not todo:
        return []
    log.warning("fencing: killing %s", ", ".join(f"{i.kind}/{i.id}" for i in todo))
    jobs = [asyncio.ensure_future(kill(i)) for i in todo]
    await asyncio.wait(jobs, timeout=max(0.0, deadline - time.time()))
    left = [f"{i.kind}/{i.id}" for i in todo if i.running]
    if left:
        log.error("fencing: still running at the deadline: %s", ", ".join(left))
    return left


@dataclass(frozen=True)
class Outcome:
    """How one move of an evacuation or restore went."""

    key: str
    target: str | None
    ok: bool
    message: str


async def run_moves(moves: list, one: Callable[[object], Awaitable[str]], parallel: int,
                    say: Callable[[str], None]) -> list[Outcome]:
    """Run ``one(move)`` for each move, ``parallel`` at a time, saying
    when each begins and ends (``say``: a progress line). A move without a
    target is not run: reported with its reason. ``one`` returns what it did
    (a line); its failure is that move's, not the others'."""
    sem = asyncio.Semaphore(parallel)
    todo = [m for m in moves if m.target is not None or m.action == "stop"]
    outcomes = [Outcome(m.instance_key, None, False, f"{m.instance_key} cannot move: {m.reason}; "
                                                     f"it stays on {m.source}")
                for m in moves if m not in todo]
    for o in outcomes:
        say(o.message)

    async def run(m) -> Outcome:
        async with sem:
            say(f"{m.instance_key}: {m.action} on {m.source}" if m.target in (None, m.source)
                else f"{m.instance_key}: {m.action} {m.source} -> {m.target}")
            began = time.monotonic()
            try:
                done = await one(m)
            except Exception as e:
                message = e.message if isinstance(e, OsctlError) else str(e)
                o = Outcome(m.instance_key, m.target, False,
                            f"{m.instance_key}: {m.action} failed: {message}")
            else:
                o = Outcome(m.instance_key, m.target, True,
                            f"{m.instance_key}: {done} ({time.monotonic() - began:.1f} s)")
            say(o.message)
            return o

    return outcomes + list(await asyncio.gather(*(run(m) for m in todo)))


# --- the replicas, on every node -----------------------------------------------------

class Cluster(Protocol):
    """What this module uses of the node's cluster side (``cluster/``)."""

    name: str  # this node's

    async def view(self) -> ClusterView: ...

    async def update_instance(self, key: str,
                              fn: Callable[[InstanceRecord], InstanceRecord | None]) -> InstanceRecord | None: ...


async def replicate_here(ctx: Context, cl: Cluster, view: ClusterView) -> None:
    """One replica pass of each HA container this node holds, to its
    standby (a replica at another node is dropped first; one of a container
    no longer HA goes), its record's ``replica_at`` set. A pass that fails
    is logged: the next round tries again."""
    for rec in view.on(cl.name):
        if rec.kind != "ct" or not _here(ctx.node, rec):
            continue
        _, ct = ctx.node.registry.ct(rec.id)
        standby = view.nodes.get(rec.standby) if rec.ha and rec.standby else None
        old = ct.send_log if ct.send_log is not None and ct.send_log.replica else None
        try:
            if old is not None and (standby is None or old.peer != standby.address):
                await drop(ctx, rec.id)
            if standby is None or standby.state not in ("online", "maintenance"):
                continue
            out = await replicate(ctx, rec.id, standby.address)
        except OsctlError as e:
            log.warning("replica of %s on %s: %s", rec.key, rec.standby, e.message)
            continue
        taken = out["taken"]
        await cl.update_instance(rec.key, lambda r: replace(r, replica_at=taken)
                                 if r.node == cl.name and r.standby == rec.standby else None)


def _here(node, rec: InstanceRecord) -> bool:
    try:
        node.registry.instance(rec.kind, rec.id)
    except OsctlError:
        return False
    return True
