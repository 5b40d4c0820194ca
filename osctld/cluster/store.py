"""The cluster's records in etcd, under ``/osctld/`` (the layout is fixed
in docs/design-notes.md, "Cluster"):

- ``nodes/<name>``: a member's NodeRecord, on its lease: gone when it dies;
- ``node-state/<name>``: {"state", "since"}: online, maintenance or fenced,
  set by people and the leader; no lease, so it outlives the member;
- ``instances/<kind>/<id>``: which node holds an instance (InstanceRecord),
  changed only by compare-and-swap on the key's mod_revision;
- ``server-groups/<name>``, ``keys/<name>`` (a member's public send key);
- ``tasks/<node>/<id>`` and ``results/<id>``: the task queue (tasks.py).

Every method is a coroutine: the request runs in a thread (etcd.py).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Callable, TypeVar

from ..model.cluster import BadRecord, ClusterView, InstanceRecord, NodeRecord, ServerGroup

if TYPE_CHECKING:
    from .etcd import Etcd

log = logging.getLogger(__name__)
R = TypeVar("R")

PREFIX = "/osctld/"
ELECTION = "osctld-leader"
# How often update_instance reads and tries again when another node changed
# the record in between.
CAS_TRIES = 20
# Seconds a task's result is kept once written (on a lease of its own).
RESULT_TTL = 600


class Conflict(Exception):
    """A compare-and-swap lost CAS_TRIES times in a row."""


class Excluded(Conflict):
    """A compare-and-swap refused on a node's key, the record unchanged: a
    claim of a node whose key is gone (not a member), a recovery of a node
    whose key is back (it claims its instances itself)."""


def key(*parts: str) -> str:
    return PREFIX + "/".join(parts)


class ClusterStore:
    def __init__(self, etcd: Etcd):
        self.etcd = etcd
        self._result_lease: tuple[int, float] | None = None  # (lease, expires)

    # --- nodes -----------------------------------------------------------------

    async def put_node(self, rec: NodeRecord, lease: int) -> None:
        await self.etcd.call(self.etcd.put, key("nodes", rec.name), rec.to_json(), lease)

    async def node_states(self) -> dict[str, dict]:
        """Each node's state as last set: {"state", "since"} by name."""
        out = {}
        for kv in await self.etcd.call(self.etcd.get_prefix, key("node-state", "")):
            try:
                out[kv.key.rsplit("/", 1)[1]] = json.loads(kv.value)
            except ValueError:
                log.warning("etcd: %s is not JSON; ignored", kv.key)
        return out

    async def set_node_state(self, name: str, state: str, only_if_absent: bool = False) -> bool:
        """Set node ``name``'s state (``only_if_absent``: unless it has one):
        whether it was set."""
        value = json.dumps({"state": state, "since": time.time()})
        fn = self.etcd.create if only_if_absent else self.etcd.put
        return await self.etcd.call(fn, key("node-state", name), value) is not False

    async def mark_fenced(self, name: str) -> bool:
        """(Leader) node ``name``, lost, is marked fenced, only while its key is
        still gone: a node back meanwhile (its key put again) set itself
        online after reading its state, and a fenced mark written after that
        would stay: the node shown fenced while a member, and when it is lost
        again, a leader reading "fenced" would not recover its instances. In
        one transaction with the key's absence, either the mark comes first
        (and the returning node reads it and sets itself online) or it is
        not written."""
        value = json.dumps({"state": "fenced", "since": time.time()})
        return await self.etcd.call(self.etcd.put_if_absent, key("node-state", name), value,
                                    key("nodes", name))

    # --- instances ---------------------------------------------------------------

    async def _records(self, prefix: str, parse: Callable[[str, str], R]) -> list[tuple[R, int]]:
        """The records under ``prefix``, each parsed, with its mod_revision;
        bad ones are logged and left out."""
        out = []
        for kv in await self.etcd.call(self.etcd.get_prefix, key(prefix, "")):
            try:
                out.append((parse(kv.value, kv.key[len(PREFIX):]), kv.mod_revision))
            except BadRecord as e:
                log.warning("etcd: %s", e.message)
        return out

    async def instances(self) -> dict[str, InstanceRecord]:
        """Every instance record, by its key ("ct/101")."""
        return {r.key: r for r, _ in await self._records("instances", InstanceRecord.from_json)}

    async def instance(self, ikey: str) -> InstanceRecord | None:
        kv = await self.etcd.call(self.etcd.get, key("instances", ikey))
        return None if kv is None else InstanceRecord.from_json(kv.value, f"instances/{ikey}")

    async def create_instance(self, rec: InstanceRecord) -> InstanceRecord | None:
        """Write ``rec`` unless its key has a record: None if written, else
        the record that is there (the id is taken on that node)."""
        if await self.etcd.call(self.etcd.create, key("instances", rec.key), rec.to_json()):
            return None
        return await self.instance(rec.key) or rec

    async def update_instance(
            self, ikey: str, fn: Callable[[InstanceRecord | None], InstanceRecord | None],
            at: int | None = None, member: str | None = None,
            not_member: str | None = None) -> InstanceRecord | None:
        """Change instance ``ikey``'s record by compare-and-swap: ``fn`` gets
        the record (None: there is none) and returns the one to write
        (None: delete it; the same object: leave it); it is called again
        with the newer record whenever another writer came in between.
        With ``at``, only the record at that mod_revision is changed (a
        decision taken on it): one changed since is left as it is.
        With ``member`` (``not_member``), a change of a record is made only
        while that node's key exists (does not), in the same transaction:
        Excluded when that was what failed. The record as left. Conflict
        after CAS_TRIES lost races."""
        k = key("instances", ikey)
        present = None if member is None else key("nodes", member)
        absent = None if not_member is None else key("nodes", not_member)
        for _ in range(CAS_TRIES):
            kv = await self.etcd.call(self.etcd.get, k)
            old = None if kv is None else InstanceRecord.from_json(kv.value, f"instances/{ikey}")
            if at is not None and (kv is None or kv.mod_revision != at):
                return old
            new = fn(old)
            if new is old:
                return old
            if kv is None:
                if new is None or await self.etcd.call(self.etcd.create, k, new.to_json()):
                    return new
            elif await self.etcd.call(self.etcd.swap, k, None if new is None else new.to_json(),
                                      kv.mod_revision, present, absent):
                return new
            elif present or absent:
                now = await self.etcd.call(self.etcd.get, k)
                if now is not None and now.mod_revision == kv.mod_revision:
                    who = member if present else not_member
                    raise Excluded(f"instances/{ikey} not changed: node {who}'s key is "
                                   f"{'gone' if present else 'there'}")
        raise Conflict(f"instances/{ikey} kept changing under {CAS_TRIES} updates")

    # --- server groups ---------------------------------------------------------------

    async def groups(self) -> dict[str, ServerGroup]:
        return {g.name: g for g, _ in await self._records("server-groups", ServerGroup.from_json)}

    async def create_group(self, group: ServerGroup) -> bool:
        """Whether it was created (False: the name is taken)."""
        return await self.etcd.call(self.etcd.create, key("server-groups", group.name),
                                    group.to_json())

    async def delete_group(self, name: str) -> bool:
        return await self.etcd.call(self.etcd.delete, key("server-groups", name))

    # --- send keys ---------------------------------------------------------------------

    async def put_send_key(self, node: str, pubkey: str) -> None:
        await self.etcd.call(self.etcd.put, key("keys", node), pubkey)

    async def send_keys(self) -> dict[str, str]:
        """Each member's public send key, by node name."""
        return {kv.key.rsplit("/", 1)[1]: kv.value
                for kv in await self.etcd.call(self.etcd.get_prefix, key("keys", ""))}

    # --- the whole -----------------------------------------------------------------------

    async def leader(self) -> str | None:
        kv = await self.etcd.call(self.etcd.leader, ELECTION)
        return None if kv is None else kv.value

    async def view(self) -> ClusterView:
        """The cluster as the decision functions read it (each instance
        record's mod_revision with it). A node with a key
        is in the state its node-state says (online if none); a node with
        only a node-state lost its lease: offline, unless it was fenced."""
        nodes: dict[str, NodeRecord] = {}
        states = await self.node_states()
        for rec, _ in await self._records("nodes", NodeRecord.from_json):
            st = states.get(rec.name) or {}
            nodes[rec.name] = NodeRecord(
                rec.name, rec.address, st.get("state") or "online", rec.cpus, rec.memory,
                rec.disk, float(st.get("since") or rec.since))
        for name, st in states.items():
            if name not in nodes:
                state = "fenced" if st.get("state") == "fenced" else "offline"
                nodes[name] = NodeRecord(name, "", state, 0, 0, 0, float(st.get("since") or 0))
        instances = await self._records("instances", InstanceRecord.from_json)
        return ClusterView(nodes, {r.key: r for r, _ in instances}, await self.groups(),
                           await self.leader(), {r.key: rev for r, rev in instances})

    # --- tasks -----------------------------------------------------------------------------

    async def submit(self, node: str, verb: str, args: dict, by: str) -> str:
        """Queue task ``verb`` for ``node``: its id."""
        tid = uuid.uuid4().hex
        value = json.dumps({"verb": verb, "args": args, "by": by, "created": time.time()})
        await self.etcd.call(self.etcd.put, key("tasks", node, tid), value)
        return tid

    async def take_tasks(self, node: str) -> list[tuple[str, dict]]:
        """The tasks queued for ``node``, each taken off the queue (deleted
        at the revision read, so that a task runs once), oldest first."""
        out = []
        kvs = await self.etcd.call(self.etcd.get_prefix, key("tasks", node, ""))
        for kv in sorted(kvs, key=lambda kv: kv.mod_revision):
            if not await self.etcd.call(self.etcd.swap, kv.key, None, kv.mod_revision):
                continue
            try:
                out.append((kv.key.rsplit("/", 1)[1], json.loads(kv.value)))
            except ValueError:
                log.warning("etcd: task %s is not JSON; dropped", kv.key)
        return out

    async def put_result(self, tid: str, result: dict) -> None:
        await self.etcd.call(self._put_result, tid, json.dumps(result))

    def _put_result(self, tid: str, value: str) -> None:
        """Results share a lease of RESULT_TTL seconds, granted anew when
        less than half of it is left: each result lives at least half that."""
        now = time.monotonic()
        if self._result_lease is None or self._result_lease[1] - now < RESULT_TTL / 2:
            self._result_lease = (self.etcd.grant(RESULT_TTL), now + RESULT_TTL)
        self.etcd.put(key("results", tid), value, self._result_lease[0])

    async def result(self, tid: str) -> dict | None:
        kv = await self.etcd.call(self.etcd.get, key("results", tid))
        return None if kv is None else json.loads(kv.value)
