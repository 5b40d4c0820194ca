"""HA recovery, done: the leader waits out a lost node's fencing margin and
has each of its HA instances started on its standby from the last replica
(``decide.recovery_plan``), as an ``ha.recover`` task there
(``recover_here``, whose take-over excludes the node's own claim on its
key); the dead node is marked fenced afterwards, once all were recovered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, replace
from typing import TYPE_CHECKING

from osctl.protocol import CONFLICT, OsctlError

from . import decide, tasks
from .actions import Actions, split_key
from .errors import EtcdError, EtcdUnavailable
from .store import Excluded

if TYPE_CHECKING:
    from .agent import ClusterAgent

log = logging.getLogger(__name__)

# Plans made for one lost node: a recovery refused because its record
# changed after the leader read it (an operator's ``cluster instance set``)
# while the node stayed away (this leader saw its key gone all along) is
# decided again on the record as it is now.
RECOVERY_ROUNDS = 3


async def recover_here(cluster: ClusterAgent, step: decide.Recover, act: Actions) -> dict:
    """(The standby) start a dead node's HA instance from the replica
    here. Its record is taken over first, by compare-and-swap, only if it
    still names the dead node and is still the one the leader decided on
    (``step.revision``): a recovery runs once, and a node that came back in
    between and claimed its instance (``decide.claim``: a write, so a new
    revision) keeps it. A standby without a complete replica refuses before
    that: a record taken over by a node that cannot start the instance
    leaves it stopped everywhere, the node it names never starting its own
    copy."""
    kind, id = split_key(step.instance_key)
    why = act.unrecoverable(kind, id)
    if why is not None:
        raise OsctlError(CONFLICT, f"{step.instance_key} not recovered on {cluster.name}: {why}")
    now = time.time()
    try:
        rec = await cluster.store.update_instance(
            step.instance_key,
            lambda r: replace(decide.after(r, step), claimed_at=now)
            if r is not None and r.node == step.source else r, at=step.revision,
            not_member=step.source)
    except Excluded:
        raise OsctlError(CONFLICT, f"{step.instance_key} not recovered: node {step.source} is a "
                                   "member again (it claims its instances back itself)") from None
    except (EtcdUnavailable, EtcdError):
        # The take-over may have been written all the same (the answer lost):
        # ours if the record names this node with our time.
        rec = await cluster.store.instance(step.instance_key)
        if rec is None or rec.node != cluster.name or rec.claimed_at != now:
            raise
    if rec is None or rec.node != cluster.name:
        where = "(none)" if rec is None else rec.node
        changed = " (its record changed since the leader read it: its node came back and claimed " \
            "it, or it was set anew)" \
            if rec is not None and rec.node == step.source else ""
        raise OsctlError(CONFLICT, f"{step.instance_key} lives on node {where} now: not recovered{changed}")
    out = await act.recover(kind, id)
    log.warning("recovered %s of dead node %s here from a replica %.0f s old (what it wrote since "
                "is lost)%s", step.instance_key, step.source, out["data_age"] or 0,
                "" if out["started"] else f"; it did not start: {out['start_error']}")
    return out


async def on_node_lost(cluster: ClusterAgent, name: str, since: float) -> None:
    """(Leader) a node's lease expired: once the fencing margin passed (it
    has killed its HA instances by then, or is dead), each of its HA
    instances starts on its standby from the last replica. The node is
    marked fenced afterwards: a leader after us does not look at it again
    (one that took over half way recovers the rest: each recovery takes
    its record over only if it still names the dead node). Not when a
    recovery asked for was refused in the last round (or etcd failed): its
    instance would stay down everywhere, no leader looking at a fenced
    node again; that is logged, and the next leader or the node coming
    back settles it. Each step is taken only while this loss (``since``)
    is the leader's latest of the node."""
    await asyncio.sleep(max(0.0, since + cluster.config.fence_margin - time.time()))
    store = cluster.store
    tried: dict[str, int | None] = {}  # instance key -> the revision its recovery was asked on
    planned = False  # a round read the cluster and planned (a failed read plans nothing)
    for _ in range(RECOVERY_ROUNDS):
        try:
            view = await store.view()
        except (EtcdUnavailable, EtcdError) as e:
            log.error("node %s lost: the cluster not read (etcd: %s)", name, e)
            await asyncio.sleep(1.0)
            continue
        if not cluster.leader.is_leader or view.nodes.get(name) is None \
                or view.nodes[name].state != "offline" \
                or cluster.leader.lost_since(name) != since:
            return  # back (maybe gone again: that loss is another call's), not ours, or done
        again = {k for k, rev in tried.items() if k in view.instances
                 and view.instances[k].node == name and view.revisions.get(k) != rev}
        if planned and not again:
            break
        for step in decide.recovery_plan(view, name, time.time()):
            if planned and step.instance_key not in again:
                continue
            if isinstance(step, decide.Skip):
                log.warning("node %s lost: %s not recovered: %s", name, step.instance_key, step.reason)
                continue
            log.warning("node %s lost: recovering %s on %s from a replica %.0f s old", name,
                        step.instance_key, step.target, step.age)
            tried[step.instance_key] = step.revision
            try:
                await tasks.call(store, step.target, "ha.recover", {"recover": asdict(step)},
                                 by=cluster.name)
            except OsctlError as e:
                log.error("node %s lost: %s not recovered on %s: %s", name, step.instance_key,
                          step.target, e.message)
            except (EtcdUnavailable, EtcdError) as e:
                log.error("node %s lost: %s not recovered on %s (etcd: %s)", name,
                          step.instance_key, step.target, e)
        planned = True
    try:
        view = await store.view()
    except (EtcdUnavailable, EtcdError) as e:
        log.error("node %s lost: not marked fenced: the cluster not read (etcd: %s)", name, e)
        return
    if not cluster.leader.is_leader or cluster.leader.lost_since(name) != since:
        return
    left = sorted(k for k in tried if k in view.instances and view.instances[k].node == name)
    if left:
        log.error("node %s lost: %s NOT recovered (down until the node is back, or the next "
                  "leader recovers them): the node is not marked fenced", name, ", ".join(left))
        return
    try:
        if not await store.mark_fenced(name):
            log.warning("node %s is back: not marked fenced", name)
    except (EtcdUnavailable, EtcdError) as e:
        log.error("node %s lost: not marked fenced (etcd: %s)", name, e)
