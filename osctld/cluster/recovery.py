"""HA recovery, done: the leader waits out a lost node's fencing margin and
has each of its HA instances started on its standby from the last replica
(``decide.recovery_plan``), as an ``ha.recover`` task there
(``recover_here``); the dead node is marked fenced afterwards.
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
    rec = await cluster.store.update_instance(
        step.instance_key,
        lambda r: replace(decide.after(r, step), claimed_at=now)
        if r is not None and r.node == step.source else r, at=step.revision)
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
    its record over only if it still names the dead node)."""
    await asyncio.sleep(max(0.0, since + cluster.config.fence_margin - time.time()))
    store = cluster.store
    tried: dict[str, int | None] = {}  # instance key -> the revision its recovery was asked on
    for attempt in range(RECOVERY_ROUNDS):
        view = await store.view()
        if not cluster.leader.is_leader or view.nodes.get(name) is None \
                or view.nodes[name].state != "offline" \
                or attempt and cluster.leader.lost_since(name) != since:
            return  # back (maybe gone again: that loss is another call's), not ours, or done
        again = {k for k, rev in tried.items() if k in view.instances
                 and view.instances[k].node == name and view.revisions.get(k) != rev}
        if attempt and not again:
            break
        for step in decide.recovery_plan(view, name, time.time()):
            if attempt and step.instance_key not in again:
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
    if not await store.mark_fenced(name):
        log.warning("node %s is back: not marked fenced", name)
