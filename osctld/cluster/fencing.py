"""Self-fencing (Proxmox's, with a lease instead of a watchdog): a node
that cannot refresh its lease kills its HA instances at once, without
waiting for their locks (a replication pass may hold one for long), so that
they are down before the leader may start them elsewhere: the lease's TTL
plus the fencing margin after the last good refresh. What to kill is
``decide.self_fence`` over the records last read (etcd is gone by then).

What it killed starts again when it is back: at once under the same lease,
after a claim of its record under a new one (``on_lease_regained``). A
daemon that was stopped fenced nothing: once started it kills its copies
the records place elsewhere (``on_start``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

from osctl.protocol import OsctlError

from ..model.cluster import ClusterView
from ..model.vm import VM
from . import decide
from .actions import Actions, split_key
from .errors import EtcdError, EtcdUnavailable
from .store import Conflict

if TYPE_CHECKING:
    from ..model.container import Container
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
    """What this node killed when it fenced itself: each instance's key and
    the lease it was killed under (None: one etcd said expired), until it
    is started again or found recovered elsewhere. Kept across losses: an
    instance killed under one lease and not yet claimed back is still owed
    a start (a later fencing finds it stopped and kills nothing)."""

    killed: dict[str, int | None] = field(default_factory=dict)
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
        killed, left = await fence(node, [split_key(k) for k in keys], deadline)
        fenced.killed.update((k, lease) for k in killed)
    log.error("cluster: node %s fenced itself: %s killed%s", cluster.name,
              ", ".join(killed) or "nothing", f"; NOT stopped: {', '.join(left)}" if left else "")


async def on_lease_regained(node: Node, fenced: Fenced, act: Actions) -> None:
    """Back in the cluster (also after a restart). What fencing killed
    under the lease the node holds now (a short blip: the lease never
    expired, so nobody recovered it) starts again here (``act.start``).
    What it killed under a lease that expired may have been recovered on
    its standby, or may be about to be (a leader that read the records
    before the node came back, a recovery task still queued): the node
    claims each one's record first (``ClusterAgent.claim``) and starts only those
    it won, so that exactly one of the claim and the recovery's
    compare-and-swap succeeds. The claims (etcd's I/O) are made without
    ``fenced.busy``: a new loss meanwhile fences at once, and this stops.
    A node the leader marked fenced is online again, first (a claim
    refused or etcd failing later leaves it so all the same)."""
    cluster = _agent(node)
    membership = cluster.membership
    await membership.joined.wait()
    await _online_again(cluster)  # first: nothing below may keep it fenced
    lease = membership.lease
    async with fenced.busy:  # a fencing under way ends first (and says what it killed)
        todo = sorted(fenced.killed.items())
    started = []
    for k, under in todo:
        if membership.lost or membership.lease != lease:
            log.warning("cluster: node %s is losing its lease again: the rest is started "
                        "at its next return", cluster.name)
            break
        if under is None or under != lease:
            try:
                home = await _claim(cluster, k, lease)
            except (EtcdUnavailable, EtcdError, Conflict) as e:
                log.error("cluster: %s not claimed back (%s): it stays stopped until the "
                          "node is back again", k, e)
                continue
            if home != cluster.name:
                log.warning("cluster: %s lives on %s now: not started here", k, home or "no node")
                if k in fenced.killed and fenced.killed[k] == under:
                    del fenced.killed[k]
                if home is not None:  # one its fencing failed to kill goes now
                    await fence(node, [split_key(k)], time.monotonic() + STRAY_KILL)
                continue
        async with fenced.busy:
            if membership.lost or membership.lease != lease or \
                    k not in fenced.killed or fenced.killed[k] != under:
                continue  # lost again (the loop ends), or fenced anew meanwhile
            del fenced.killed[k]
            try:
                await act.start(*split_key(k))
                started.append(k)
            except OsctlError as e:
                log.error("cluster: %s fenced and not started again: %s", k, e.message)
    if started:
        log.warning("cluster: node %s is back: %s started again", cluster.name, ", ".join(started))


async def _online_again(cluster: ClusterAgent) -> None:
    """A node the leader marked fenced is online again once back."""
    try:
        states = await cluster.store.node_states()
        if (states.get(cluster.name) or {}).get("state") == "fenced":
            await cluster.store.set_node_state(cluster.name, "online")
    except (EtcdUnavailable, EtcdError) as e:
        log.error("cluster: node %s left marked fenced (etcd: %s)", cluster.name, e)


# Tries of a claim that etcd did not answer, a second apart, while the node
# keeps its lease: an unclaimed instance stays stopped, and no leader
# recovers the instances of a node that is a member.
CLAIM_TRIES = 10


async def _claim(cluster: ClusterAgent, ikey: str, lease: int | None) -> str | None:
    """``cluster.claim(ikey)``, tried again on etcd's errors while the lease
    is ``lease`` and not being lost (a new loss is fenced anew, which waits
    for this, and the claim is made at the next return)."""
    for _ in range(CLAIM_TRIES - 1):
        try:
            return await cluster.claim(ikey)
        except (EtcdUnavailable, EtcdError) as e:
            if cluster.membership.lease != lease or cluster.membership.lost:
                raise
            log.warning("cluster: claiming %s back: %s; trying again", ikey, e)
            await asyncio.sleep(1.0)
    return await cluster.claim(ikey)


# Seconds the kills of copies found running elsewhere may take.
STRAY_KILL = 30.0


async def on_start(node: Node) -> None:
    """(Once, when the daemon starts as a member) the running instances it
    re-adopted may have been recovered elsewhere while it was away: a
    stopped osctld cannot fence, so a node whose daemon was gone for longer
    than the lease's TTL and the margin had its HA instances started on
    their standby while its own copies ran on. Each running HA instance the
    records still place here is claimed back (``ClusterAgent.claim``: a recovery
    decided before this node rejoined then fails, as after a fencing; etcd's
    errors are tried again as ``_claim`` does), and every running HA one
    whose record names another node is killed at once: it ran in two
    places (a non-HA one is never recovered elsewhere: that clash is only
    logged). Its files stay (a container's stale copy is
    replaced by the next replica from its new node, ``decide.stale_copy``)."""
    cluster = _agent(node)
    await cluster.membership.joined.wait()
    await cluster.loaded.wait()
    strays = []
    instances: list[Container | VM] = [*node.registry.all_cts(), *node.registry.all_vms()]
    for inst in instances:
        if not inst.running or isinstance(inst, VM) and inst.transfer is not None:
            continue  # a VM's move under way is settled by its own start-up step
        ikey = f"{inst.kind}/{inst.id}"
        rec = cluster.records.get(ikey)
        if rec is not None and rec.node == cluster.name and rec.ha:
            try:
                await _claim(cluster, ikey, cluster.membership.lease)
            except (EtcdUnavailable, EtcdError, Conflict) as e:
                log.error("cluster: %s not claimed back at start-up (%s)", ikey, e)
            rec = cluster.records.get(ikey)
        if rec is not None and rec.node != cluster.name:
            since = "" if rec.claimed_at is None else \
                " since " + time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(rec.claimed_at))
            if not rec.ha:  # never started elsewhere by a recovery: an operator's to sort out
                log.error("cluster: %s runs here and its record places it on node %s%s: left "
                          "running (not HA)", ikey, rec.node, since)
                continue
            log.error("cluster: %s ran in two places%s: here and on node %s, where its record places "
                      "it (recovered while this osctld was away); killed here, its files kept",
                      ikey, since, rec.node)
            strays.append((inst.kind, inst.id))
    if strays:
        await fence(node, strays, time.monotonic() + STRAY_KILL)
