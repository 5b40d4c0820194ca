"""Accounts and permissions without a socket: the dispatcher's check before a
command runs, listings and events filtered to what an account may see,
history lines naming the account, and the accounts file.

The matrix: each permission (none, stats, login, sudo-srv, manager) against
each class of verb, on the group it was given on, a child group and a
sibling group. A verb that runs is replaced by a stub that records the
call, so "allowed" means the command itself ran and "denied" means it did
not.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from osctld.accounts import Accounts, sees_event
from osctld.commands import REGISTRY, Target, command, load_all
from osctld.events import EventBus
from osctld.model.account import ROOT, Account, Perm
from osctld.model.container import Container
from osctld.model.group import Group
from osctld.model.idmap import IdRange
from osctld.model.pool import Pool
from osctld.model.vm import VM
from osctld.ops import Ops
from osctld.state import PoolState, Registry

from ..helpers.peer import Peer

UID = 5001  # the frontend's host user
OTHER_UID = 5002  # another tenant's frontend


class Node:
    """What the dispatcher and the verbs below need of a node: pool "default"
    with groups /t1, /t1/web (its child) and /t2 (its sibling), a container
    and a VM in each, and accounts kept in ``tmp``."""

    def __init__(self, tmp: Path):
        self.events = EventBus()
        self.ops = Ops()
        self.registry = Registry()
        self.accounts = Accounts(tmp / "accounts.yml")
        self.lines: list[tuple[str | None, dict]] = []
        self.history = SimpleNamespace(write=lambda pool, entry: self.lines.append((pool, entry)))
        self.containers = SimpleNamespace(cgroups=None)  # group.ls reads no cgroup
        self.cluster = None  # alone: no cluster to ask where an instance lives
        pstate = PoolState(Pool("default", "dir", Path("/nonexistent/pools/default")), IdRange())
        self.registry.pools["default"] = pstate
        pstate.users["u"] = SimpleNamespace(name="u")
        for path, name in (("/t1", "t1"), ("/t1/web", "web"), ("/t2", "t2")):
            pstate.groups[path] = Group(path, "default")
            pstate.cts[f"c-{name}"] = Container(f"c-{name}", "default", "u", "debian", "12",
                                                group=path)
            pstate.vms[f"v-{name}"] = VM(f"v-{name}", "default", "u", "debian", "12", 1,
                                         1 << 30, 10 << 30, group=path)


def front(node: Node, uid: int = UID, conn: int = 7) -> Peer:
    """A frontend on the account socket."""
    return Peer(node, conn, uid=uid, account=True)


@pytest.fixture(scope="module", autouse=True)
def verbs():
    load_all()


@pytest.fixture
def node(tmp_path) -> Node:
    return Node(tmp_path)


@pytest.fixture
def ran(monkeypatch) -> list[tuple[str, dict]]:
    """Every verb replaced by a stub that records that it ran."""
    calls: list[tuple[str, dict]] = []
    for spec in REGISTRY.values():
        async def stub(ctx, _name=spec.name, **args):
            calls.append((_name, args))
            return {}
        monkeypatch.setattr(spec, "func", stub)
    return calls


def grant(node: Node, perm: Perm | None, group: str = "/t1", uid: int = UID,
          name: str = "front") -> Account:
    account = Account(name, uid, grants={f"default:{group}": perm} if perm else {})
    node.accounts.add(account)
    return account


# The verbs of each class, as a frontend calls them on the object in group ``g``
# ("t1", "web" or "t2"); and what each class needs.
CLASSES = {
    Perm.STATS: lambda g: [("ct.show", {"id": f"c-{g}"}), ("vm.show", {"id": f"v-{g}"}),
                           ("ct.netif.ls", {"id": f"c-{g}"}), ("ct.feature.ls", {"id": f"c-{g}"}),
                           ("group.show", {"path": {"t1": "/t1", "web": "/t1/web", "t2": "/t2"}[g]})],
    Perm.LOGIN: lambda g: [("ct.exec", {"id": f"c-{g}", "argv": ["true"]}),
                           ("ct.attach", {"id": f"c-{g}"}), ("ct.console", {"id": f"c-{g}"}),
                           ("vm.console", {"id": f"v-{g}"})],
    Perm.SUDO_SRV: lambda g: [("ct.start", {"id": f"c-{g}"}), ("ct.stop", {"id": f"c-{g}"}),
                              ("ct.restart", {"id": f"c-{g}"}), ("vm.start", {"id": f"v-{g}"}),
                              ("vm.stop", {"id": f"v-{g}"})],
    Perm.MANAGER: lambda g: [
        ("ct.new", {"id": "n", "user": "u", "group": {"t1": "/t1", "web": "/t1/web", "t2": "/t2"}[g]}),
        ("vm.new", {"id": "n", "user": "u", "cores": 1, "memory": "1G", "disk": "10G",
                    "group": {"t1": "/t1", "web": "/t1/web", "t2": "/t2"}[g]}),
        ("ct.set", {"id": f"c-{g}", "hostname": "h"}), ("ct.del", {"id": f"c-{g}"}),
        ("vm.set", {"id": f"v-{g}", "cores": 2}), ("vm.del", {"id": f"v-{g}"}),
        ("ct.netif.new", {"id": f"c-{g}", "name": "eth1"}),
        ("ct.netif.ip.add", {"id": f"c-{g}", "name": "eth0", "address": "192.0.2.1"}),
        ("vm.netif.route.add", {"id": f"v-{g}", "name": "eth0", "prefix": "198.51.100.0/28"})],
}
# Root's alone, whatever the account holds.
ROOT_ONLY = [("ct.feature.enable", {"id": "c-t1", "names": ["tun"]}),
             ("ct.device.add", {"id": "c-t1", "type": "char", "major": 1, "minor": 3, "mode": "rw"}),
             ("ct.prlimit.set", {"id": "c-t1", "name": "nofile", "soft": 10}),
             ("ct.netif.set", {"id": "c-t1", "name": "eth0", "max_tx": "1G"}),
             ("group.new", {"path": "/t1/x"}), ("group.set", {"path": "/t1", "limits": {}}),
             ("user.new", {"name": "x"}), ("pool.ls", {}), ("history.ls", {}),
             ("account.new", {"name": "x", "uid": 7000}), ("permission.ls", {}),
             ("daemon.status", {})]
PERMS = [None, *Perm]


@pytest.mark.parametrize("held", PERMS, ids=lambda p: p.wire if p else "none")
@pytest.mark.parametrize("needed", list(Perm), ids=lambda p: p.wire)
@pytest.mark.parametrize("where, inside", [("t1", True), ("web", True), ("t2", False)],
                         ids=["group", "child", "sibling"])
def test_each_permission_against_each_verb_class_on_the_group_a_child_and_a_sibling(
        node, ran, held, needed, where, inside):
    grant(node, held)
    peer = front(node)
    allowed = inside and held is not None and held >= needed

    async def main():
        for i, (cmd, args) in enumerate(CLASSES[needed](where)):
            reply = await peer.call(i, cmd, **args)
            if allowed:
                assert "ok" in reply, (cmd, reply)
                assert ran[-1][0] == cmd
            else:
                assert reply["error"]["code"] == "denied", (cmd, reply)
                assert needed.wire in reply["error"]["message"]
                assert reply["error"]["details"]["permission"] == needed.wire
    asyncio.run(main())
    if not allowed:
        assert ran == []  # nothing happened


@pytest.mark.parametrize("held", PERMS, ids=lambda p: p.wire if p else "none")
def test_root_only_verbs_are_denied_to_every_account_and_run_for_root(node, ran, held):
    grant(node, held, "/")

    async def main():
        for i, (cmd, args) in enumerate(ROOT_ONLY):
            reply = await front(node).call(i, cmd, **args)
            assert reply["error"]["code"] == "denied", (cmd, reply)
            assert "root only" in reply["error"]["message"]
        assert ran == []
        for i, (cmd, args) in enumerate(ROOT_ONLY):
            assert "ok" in await Peer(node).call(i, cmd, **args), cmd
        assert len(ran) == len(ROOT_ONLY)
    asyncio.run(main())


def test_a_verb_that_declares_no_permission_is_root_only():
    undeclared = sorted(s.name for s in REGISTRY.values() if s.needs is None)
    assert "account.new" in undeclared and "pool.export" in undeclared
    # Every verb open to accounts says where it is checked, or is a listing.
    listings = sorted(s.name for s in REGISTRY.values() if s.needs and s.on is None)
    assert listings == ["consumption.ls", "ct.ls", "ct.pid", "ct.top", "daemon.commands",
                        "event.subscribe", "group.ls", "maintenance.ls", "op.cancel", "op.ls", "vm.ls"]


def test_a_childs_own_permission_overrides_the_parents(node, ran):
    account = grant(node, Perm.MANAGER, "/t1")
    node.accounts.replace(Account(account.name, UID, grants={
        "default:/t1": Perm.MANAGER, "default:/t1/web": Perm.STATS}))

    async def main():
        peer = front(node)
        assert "ok" in await peer.call(1, "ct.start", id="c-t1")
        reply = await peer.call(2, "ct.start", id="c-web")
        assert reply["error"]["code"] == "denied"
        assert "account front has stats there" in reply["error"]["message"]
        assert "ok" in await peer.call(3, "ct.show", id="c-web")
    asyncio.run(main())


def test_an_account_is_checked_at_each_request_and_a_deleted_one_is_denied(node, ran):
    grant(node, Perm.STATS)

    async def main():
        peer = front(node)
        assert (await peer.call(1, "ct.start", id="c-t1"))["error"]["code"] == "denied"
        node.accounts.replace(Account("front", UID, grants={"default:/t1": Perm.SUDO_SRV}))
        assert "ok" in await peer.call(2, "ct.start", id="c-t1")
        node.accounts.remove("front")
        reply = await peer.call(3, "ct.show", id="c-t1")
        assert reply["error"]["code"] == "denied"
        assert "no longer exists" in reply["error"]["message"]
    asyncio.run(main())


def test_root_on_its_own_socket_may_do_everything_everywhere(node, ran):
    async def main():
        peer = Peer(node)
        for i, (cmd, args) in enumerate(c for perm in Perm for g in ("t1", "web", "t2")
                                        for c in CLASSES[perm](g)):
            assert "ok" in await peer.call(i, cmd, **args), cmd
    asyncio.run(main())


def test_an_object_that_is_not_there_is_not_found_not_denied(node, ran):
    grant(node, Perm.MANAGER)

    async def main():
        reply = await front(node).call(1, "ct.start", id="nope")
        assert reply["error"]["code"] == "not_found"
        assert ran == []
        # A group that is not there, where the account could make one: the
        # command finds it missing.
        assert "ok" in await front(node).call(2, "ct.new", id="n", user="u", group="/t1/nope")
        assert ran == [("ct.new", {"id": "n", "user": "u", "group": "/t1/nope"})]
    asyncio.run(main())


# --- what an account sees -----------------------------------------------------------

def test_listings_show_an_account_only_its_groups_and_root_everything(node):
    grant(node, Perm.STATS, "/t1")
    grant(node, Perm.MANAGER, "/t2", uid=OTHER_UID, name="other")

    async def main():
        mine, other, root = front(node), front(node, OTHER_UID), Peer(node)
        ids = lambda reply: sorted(x.get("id") or x.get("path") for x in reply["ok"])  # noqa: E731
        assert ids(await mine.call(1, "ct.ls")) == ["c-t1", "c-web"]
        assert ids(await mine.call(2, "vm.ls")) == ["v-t1", "v-web"]
        assert ids(await mine.call(3, "group.ls")) == ["/t1", "/t1/web"]
        assert ids(await other.call(4, "ct.ls")) == ["c-t2"]
        assert ids(await other.call(5, "vm.ls", state="stopped")) == ["v-t2"]
        assert ids(await other.call(6, "group.ls")) == ["/t2"]
        assert ids(await root.call(7, "ct.ls")) == ["c-t1", "c-t2", "c-web"]
        assert ids(await root.call(8, "group.ls")) == ["/", "/default", "/t1", "/t1/web", "/t2"]
        # Another tenant's container: not even shown.
        assert (await other.call(9, "ct.show", id="c-t1"))["error"]["code"] == "denied"
    asyncio.run(main())


def test_events_reach_an_account_only_about_what_it_may_see(node, ran):
    mine = grant(node, Perm.SUDO_SRV, "/t1")
    other = grant(node, Perm.SUDO_SRV, "/t2", uid=OTHER_UID, name="other")
    subs = {name: node.events.subscribe(lambda: None, visible=lambda ev, a=access: sees_event(a, ev))
            for name, access in (("mine", mine), ("other", other), ("root", ROOT), ("gone", None))}
    ev = node.events.publish
    ev("state", object="ct", pool="default", id="c-web", group="/t1/web", state="running")
    ev("state", object="vm", pool="default", id="v-t2", group="/t2", state="running")
    ev("remove", object="netif", pool="default", id="c-t1", group="/t1", netif="eth0")
    ev("add", object="group", pool="default", id="/t1/web")
    ev("add", object="user", pool="default", id="u")
    ev("add", object="pool", pool="p2")
    ev("consumption", pool="default")  # of a kind that names no group: root's

    async def main():
        await front(node).call(1, "ct.start", id="c-t1")
        await front(node, OTHER_UID).call(1, "ct.start", id="c-t1")  # denied: announced to it
    asyncio.run(main())
    what = {n: [(e["type"], e.get("id"), e.get("phase"), e.get("account"))
                for e in (sub.queue.get_nowait() for _ in range(sub.queue.qsize()))]
            for n, sub in subs.items()}
    assert what["mine"] == [("state", "c-web", None, None), ("remove", "c-t1", None, None),
                            ("add", "/t1/web", None, None), ("command", "c-t1", "run", "front"),
                            ("command", "c-t1", "done", "front")]
    assert what["other"] == [("state", "v-t2", None, None), ("command", "c-t1", "failed", "other")]
    assert len(what["root"]) == 10
    assert what["gone"] == []


def test_history_lines_name_the_account_that_acted(node, ran):
    grant(node, Perm.SUDO_SRV)

    async def main():
        await front(node).call(1, "ct.start", id="c-t1")
        await front(node).call(2, "ct.stop", id="c-t2")
        await Peer(node).call(3, "ct.stop", id="c-t2")
    asyncio.run(main())
    assert [(e["cmd"], e["account"], e["uid"], e["result"]) for _, e in node.lines] == [
        ("ct.start", "front", UID, "ok"), ("ct.stop", "front", UID, "error"),
        ("ct.stop", "root", 0, "ok")]
    assert "needs permission sudo-srv on group default:/t2" in node.lines[1][1]["error"]


# --- the accounts themselves -----------------------------------------------------------

def test_accounts_and_permissions_are_written_and_read_back(node, tmp_path):
    root = Peer(node)

    async def main():
        assert "ok" in await root.call(1, "account.new", name="front", uid=UID)
        assert "ok" in await root.call(2, "account.new", name="s-backup", uid=6001, group="/t1")
        assert "ok" in await root.call(3, "account.new", name="s-backup", uid=6002, group="/t2")
        assert "ok" in await root.call(4, "permission.add", account="front", group="/t1/web",
                                       permission="login")
        assert "ok" in await root.call(5, "permission.add", account="s-backup@/t1",
                                       group="/t1/web", permission="stats")
        return await root.call(6, "permission.ls")
    assert asyncio.run(main())["ok"] == [
        {"account": "front", "group": "default:/t1/web", "permission": "login"},
        {"account": "s-backup@default:/t1", "group": "default:/t1/web", "permission": "stats"}]
    again = Accounts(tmp_path / "accounts.yml")
    again.load()
    assert [a.public() for a in again.all()] == [a.public() for a in node.accounts.all()]
    assert oct(os.stat(tmp_path / "accounts.yml").st_mode & 0o777) == "0o600"
    assert again.by_uid(6002).ref == "s-backup@default:/t2"


@pytest.mark.parametrize("cmd, args, code, words", [
    ("account.new", {"name": "front", "uid": 7001}, "exists", "account front exists"),
    ("account.new", {"name": "again", "uid": UID}, "exists", "is account front"),
    ("account.new", {"name": "s-x", "uid": 7002}, "invalid", "service account"),
    ("account.new", {"name": "x", "uid": 7003, "group": "/t1"}, "invalid", "service account"),
    ("account.new", {"name": "s-x", "uid": 7004, "group": "/nope"}, "not_found", "/nope"),
    ("account.new", {"name": "x", "uid": 0}, "invalid", "out of range"),
    ("account.new", {"name": "Bad Name", "uid": 7005}, "invalid", "account name"),
    ("permission.add", {"account": "front", "group": "/t1", "permission": "god"}, "invalid",
     "unknown permission"),
    ("permission.add", {"account": "s-b@/t1", "group": "/t2", "permission": "stats"}, "invalid",
     "own group and below"),
    ("permission.add", {"account": "nobody", "group": "/t1", "permission": "stats"}, "not_found",
     "account nobody"),
    ("permission.add", {"account": "front", "group": "/nope", "permission": "stats"}, "not_found",
     "/nope"),
    ("permission.del", {"account": "front", "group": "/t2"}, "not_found", "no permission"),
    ("account.del", {"account": "s-b@/t2"}, "not_found", "s-b@default:/t2"),
])
def test_bad_account_changes_are_refused_and_change_nothing(node, tmp_path, cmd, args, code, words):
    grant(node, Perm.STATS)
    node.accounts.add(Account("s-b", 6001, group="default:/t1"))
    before = (tmp_path / "accounts.yml").read_bytes()
    reply = asyncio.run(Peer(node).call(1, cmd, **args))
    assert reply["error"]["code"] == code and words in reply["error"]["message"], reply
    assert (tmp_path / "accounts.yml").read_bytes() == before


def test_a_change_that_cannot_be_written_does_not_take_effect(node, tmp_path):
    grant(node, Perm.STATS)
    (tmp_path / "accounts.yml").unlink()
    (tmp_path / "accounts.yml").mkdir()  # the rename fails
    with pytest.raises(OSError):
        node.accounts.replace(Account("front", UID, grants={"default:/t1": Perm.MANAGER}))
    assert node.accounts.get("front").grants == {"default:/t1": Perm.STATS}


def test_deleting_an_account_takes_its_rights_with_it(node):
    grant(node, Perm.MANAGER)

    async def main():
        peer = front(node)
        assert len((await peer.call(1, "ct.ls"))["ok"]) == 2
        assert "ok" in await Peer(node).call(2, "account.del", account="front")
        assert (await peer.call(3, "ct.ls"))["error"]["code"] == "denied"
    asyncio.run(main())


async def takes_name(ctx, name: str) -> dict:
    """A verb with a ``name``."""
    return {}


@pytest.mark.parametrize("kw", [
    {"mutating": True, "target": Target("user", "name"), "needs": Perm.MANAGER},  # no group
    {"needs": Perm.STATS, "on": Target("pool", "name")},
    {"on": Target("ct", "name")},  # an object, but no permission
    {"needs": Perm.STATS, "on": Target("ct", "id")},  # not among its arguments
])
def test_a_permission_is_needed_in_the_group_of_an_object_the_verb_names(kw):
    with pytest.raises(RuntimeError):
        command("dt.bad", **kw)(takes_name)
    assert "dt.bad" not in REGISTRY


def test_a_manager_adds_routed_netifs_only_a_bridge_is_the_hosts(node):
    grant(node, Perm.MANAGER)
    reply = asyncio.run(front(node).call(1, "ct.netif.new", id="c-t1", name="eth1",
                                         type="bridge", link="br0"))
    assert reply["error"]["code"] == "denied" and "bridged" in reply["error"]["message"]
    assert node.registry.pools["default"].cts["c-t1"].netifs == []


def test_an_account_sees_and_cancels_its_own_operations_only(node, monkeypatch):
    grant(node, Perm.SUDO_SRV, "/")
    grant(node, Perm.SUDO_SRV, "/", uid=OTHER_UID, name="other")
    go = asyncio.Event()

    async def slow(ctx, id):
        await go.wait()
        return {}
    monkeypatch.setattr(REGISTRY["ct.start"], "func", slow)

    async def main():
        mine = front(node)
        started = asyncio.ensure_future(mine.call(1, "ct.start", id="c-t1"))
        await asyncio.sleep(0.01)
        op = f"{mine.dispatcher.caller.conn}:1"
        other, again = front(node, OTHER_UID, conn=8), front(node, conn=9)
        assert (await other.call(1, "op.ls"))["ok"] == []
        assert (await other.call(2, "op.cancel", op=op))["error"]["code"] == "not_found"
        assert (await Peer(node, conn=10).call(1, "op.ls"))["ok"] == [op]
        assert (await again.call(1, "op.ls"))["ok"] == [op]
        assert (await again.call(2, "op.cancel", op=op))["ok"] == {"cancelled": op}
        assert (await started)["error"]["code"] == "cancelled"
    asyncio.run(main())


def test_the_verb_list_says_what_each_verb_needs(node):
    grant(node, None)  # an account with no permission may ask
    commands = {c["cmd"]: c["permission"]
                for c in asyncio.run(front(node).call(1, "daemon.commands"))["ok"]}
    assert (commands["ct.show"], commands["ct.exec"], commands["vm.start"], commands["ct.new"],
            commands["pool.export"]) == ("stats", "login", "sudo-srv", "manager", "root")


def test_consumption_records_show_an_account_only_its_groups(node, monkeypatch):
    from osctld import consumption
    grant(node, Perm.STATS, "/t1")
    rows = [{"pool": "default", "group": g, "id": g} for g in ("/", "/t1", "/t1/web", "/t2")]
    monkeypatch.setattr(consumption, "records", lambda *_args: [dict(r) for r in rows])

    async def main():
        mine = await front(node).call(1, "consumption.ls", period="2026-11")
        assert [r["id"] for r in mine["ok"]] == ["/t1", "/t1/web"]
        assert len((await Peer(node).call(2, "consumption.ls", period="2026-11"))["ok"]) == 4
    asyncio.run(main())
