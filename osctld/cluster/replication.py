"""HA replicas, kept: every ``replication_interval`` each member sends a
replica pass of the HA instances its records name it for to their standby
(``ct replicate``: ``ct send`` without ``state``; ``vm replicate``: a
snapshot of the VM's files), and drops a replica at another node than the
standby, or of an instance no longer HA.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from osctl.protocol import OsctlError

from .actions import Actions
from .errors import EtcdError, EtcdUnavailable

if TYPE_CHECKING:
    from ..node import Node

log = logging.getLogger(__name__)


async def replicate_here(node: Node, act: Actions) -> None:
    """One replica pass of each HA instance this node holds, to its
    standby (a replica at another node is dropped first; one of an instance
    no longer HA goes), its record's ``replica_at`` set. A pass that fails
    is logged: the next round tries again."""
    cluster = node.cluster
    assert cluster is not None
    view = await cluster.store.view()
    for rec in view.on(cluster.name):
        try:
            _, inst = node.registry.instance(rec.kind, rec.id)
        except OsctlError:
            continue
        standby = view.nodes.get(rec.standby) if rec.ha and rec.standby else None
        old = inst.send_log if inst.send_log is not None and inst.send_log.replica else None
        try:
            if old is not None and (standby is None or old.peer != standby.address):
                await act.drop(rec.kind, rec.id)
            if standby is None or standby.state not in ("online", "maintenance"):
                continue
            out = await act.replicate(rec.kind, rec.id, standby.address)
        except OsctlError as e:
            log.warning("replica of %s on %s: %s", rec.key, rec.standby, e.message)
            continue
        taken = out["taken"]
        await cluster.store.update_instance(
            rec.key, lambda r: replace(r, replica_at=taken)
            if r is not None and r.node == cluster.name and r.standby == rec.standby else r)


async def replication(node: Node, act: Actions) -> None:
    """Replica passes every ``cluster.replication_interval`` seconds, until cancelled."""
    assert node.cluster is not None
    every = node.cluster.config.replication_interval
    while True:
        began = time.monotonic()
        try:
            await replicate_here(node, act)
        except (EtcdUnavailable, EtcdError) as e:
            log.debug("cluster: replicas: %s", e)
        except Exception:
            log.exception("cluster: replicas")
        await asyncio.sleep(max(1.0, every - (time.monotonic() - began)))
