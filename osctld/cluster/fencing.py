"""Self-fencing (Proxmox's, with a lease instead of a watchdog): a node
that cannot refresh its lease kills its HA instances at once, without
waiting for their locks (a replication pass may hold one for long), so that
they are down before the leader may start them elsewhere: the lease's TTL
plus the fencing margin after the last good refresh. What to kill is
``decide.self_fence`` over the records last read (etcd is gone by then).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

from osctl.protocol import OsctlError

from ..model.cluster import ClusterView
from . import decide
from .actions import Actions, split_key

if TYPE_CHECKING:
    from ..node import Node
    from .agent import ClusterAgent

log = logging.getLogger(__name__)


def _agent(node: Node) -> ClusterAgent:
    assert node.cluster is not None, "fencing runs on a cluster member only"
    return node.cluster


async def fence(node, instances: Iterable[tuple[str, str]], deadline: float) -> tuple[list[str], list[str]]:
    """Kill the running instances named (``(kind, id)``) at once, all
    together, by ``deadline`` (time.monotonic()); returns the keys of those
    it killed and of those still not stopped then (logged as an error: the
    leader may start them elsewhere). It returns once every kill is over:
    one still under way would stop an instance started again meanwhile."""
    todo = []
    for kind, id in instances:
        try:
            _, inst = node.registry.instance(kind, id)
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
        return [], []
    killed = [f"{i.kind}/{i.id}" for i in todo]
    log.warning("fencing: killing %s", ", ".join(killed))
    jobs = [asyncio.ensure_future(kill(i)) for i in todo]
    await asyncio.wait(jobs, timeout=max(0.0, deadline - time.monotonic()))
    left = [f"{i.kind}/{i.id}" for i in todo if i.running]
    if left:
        log.error("fencing: still running at the deadline: %s", ", ".join(left))
    await asyncio.gather(*jobs)  # kill() says its own errors
    return killed, left


@dataclass
class Fenced:
    """What this node killed when it fenced itself, and under which lease."""

    lease: int | None = None
    keys: list[str] = field(default_factory=list)
    # Held while a fencing runs: a lease regained meanwhile starts again what
    # was killed only once the kills are over (else a kill still under way
    # would stop the instance just started again).
    busy: asyncio.Lock = field(default_factory=asyncio.Lock)


async def on_lease_lost(node: Node, fenced: Fenced, deadline: float) -> None:
    """This node's lease could not be refreshed: its HA instances (as the
    records last read say) are killed before ``deadline``, after which the
    leader may start them on their standby. While the lease may still be
    alive (its TTL since the last good refresh) the kills wait for a good
    refresh of it: one refresh that was only slow (a loaded node) is most
    often followed by a good one, and then nothing is killed; the fencing
    margin is the kills' time. A lease etcd said expired is fenced at once."""
    cluster = _agent(node)
    membership = cluster.membership
    lease = membership.lease  # None: expired already
    async with fenced.busy:
        kill_at = deadline - cluster.config.fence_margin
        while lease is not None and membership.lost and time.monotonic() < kill_at:
            await asyncio.sleep(0.1)
        if lease is not None and membership.lease == lease and not membership.lost:
            log.warning("cluster: node %s refreshed its lease again in time: nothing fenced",
                        cluster.name)
            return
        view = ClusterView(instances=dict(cluster.records))
        keys = decide.self_fence(view, cluster.name)
        fenced.lease = lease
        fenced.keys, left = await fence(node, [split_key(k) for k in keys], deadline)
    log.error("cluster: node %s fenced itself: %s killed%s", cluster.name,
              ", ".join(fenced.keys) or "nothing", f"; NOT stopped: {', '.join(left)}" if left else "")


async def on_lease_regained(node: Node, fenced: Fenced, act: Actions) -> None:
    """Back in the cluster (also after a restart). Its lease never expired
    (a short blip): nobody started its HA instances elsewhere, so the ones
    it killed start again here (``act.start``). Else the leader recovers
    them on their standby (the records say where they live); a node it
    marked fenced is online again."""
    cluster = _agent(node)
    await cluster.membership.joined.wait()
    async with fenced.busy:
        if fenced.keys and fenced.lease is not None and cluster.membership.lease == fenced.lease:
            for k in fenced.keys:
                try:
                    await act.start(*split_key(k))
                except OsctlError as e:
                    log.error("cluster: %s fenced and not started again: %s", k, e.message)
            log.warning("cluster: node %s kept its lease: %s started again", cluster.name,
                        ", ".join(fenced.keys))
        fenced.keys = []
    states = await cluster.store.node_states()
    if (states.get(cluster.name) or {}).get("state") == "fenced":
        await cluster.store.set_node_state(cluster.name, "online")
