"""The dispatcher on its own: messages in, replies, events and history lines
out, with no socket and no root (the rules of osctld/dispatch.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
import os
from pathlib import Path

import pytest

from osctl import protocol
from osctld.commands import ALIASES, REGISTRY, Target, command, instance_command, load_all
from osctld.events import EventBus
from osctld.model.idmap import IdRange
from osctld.model.pool import Pool
from osctld.ops import Ops
from osctld.state import PoolState, Registry

from ..helpers.peer import Peer


class Node:
    """What the dispatcher and the verbs below need of the node."""

    def __init__(self, *pools: str):
        self.events = EventBus()
        self.ops = Ops()
        self.registry = Registry()
        for name in pools:
            self.add_pool(name)
        self.lines: list[tuple[str | None, dict]] = []
        self.history = SimpleNamespace(write=lambda pool, entry: self.lines.append((pool, entry)))
        self.go = asyncio.Event()
        self.cluster = None  # alone: no cluster to ask where an instance lives

    def add_pool(self, name: str) -> PoolState:
        pstate = PoolState(Pool(name, "dir", Path("/nonexistent/pools") / name), IdRange())
        self.registry.pools[name] = pstate
        return pstate


@pytest.fixture(scope="module", autouse=True)
def verbs():
    load_all()

    @command("dt.wait")
    async def wait(ctx, name: str) -> dict:
        """Waits until the test lets it go."""
        await ctx.node.go.wait()
        return {"name": name}

    @command("dt.fds")
    async def fds(ctx) -> dict:
        """Says which descriptors it was given."""
        return {"fds": list(ctx.fds)}

    @command("dt.huge")
    async def huge(ctx) -> int:
        """Answers what msgpack cannot carry."""
        return 2**70

    @command("dt.pool.add", mutating=True, target=Target("pool", "name"))
    async def pool_add(ctx, name: str, password: str = "") -> dict:
        """Makes a pool, as pool.install does."""
        ctx.node.add_pool(name)
        return {}

    @command("dt.pool.drop", mutating=True, target=Target("pool", "name"))
    async def pool_drop(ctx, name: str, fail: bool = False) -> dict:
        """Drops a pool, as pool.export does (or fails to)."""
        ctx.node.registry.pool(name)
        if fail:
            raise protocol.OsctlError(protocol.CONFLICT, "it is busy")
        del ctx.node.registry.pools[name]
        return {}

    @instance_command("dt.touch", mutating=True, alias="dt.old.touch")
    async def touch(ctx, id: str, vm: bool = False) -> dict:
        """Acts on a container or a VM, as the netif verbs do: says which."""
        await ctx.node.go.wait()
        return {"vm": vm}

    names = ["dt.wait", "dt.fds", "dt.huge", "dt.pool.add", "dt.pool.drop", "ct.dt.touch",
             "vm.dt.touch"]
    try:
        yield
    finally:
        for name in names:
            del REGISTRY[name]
        del ALIASES["dt.old.touch"]


def run(coro):
    return asyncio.run(coro)


def error_of(msg: dict) -> tuple:
    return msg.get("id"), msg["error"]["code"]


# --- the envelope and the arguments ---------------------------------------------------

@pytest.mark.parametrize("msg, req_id, words", [
    ({"cmd": "ct.ls"}, None, "integer 'id'"),
    ({"id": "7", "cmd": "ct.ls"}, None, "integer 'id'"),
    ({"id": True, "cmd": "ct.ls"}, None, "integer 'id'"),
    ({"id": 2, "args": {}}, 2, "string 'cmd'"),
    ({"id": 3, "cmd": "ct.ls", "args": [1]}, 3, "'args' must be a map"),
    ({"id": 4, "cmd": "no.such.verb"}, 4, "unknown command"),
    ({"id": 5, "cmd": "ct.show"}, 5, "missing argument(s) id"),
    ({"id": 6, "cmd": "ct.show", "args": {"id": "c1", "bogus": 1}}, 6, "unknown argument(s) bogus"),
    ({"id": 7, "cmd": "ct.show", "args": {"id": 7}}, 7, "'id' must be str"),
    ({"id": 8, "cmd": "ct.stop", "args": {"id": "c1", "timeout": True}}, 8, "'timeout' must be int"),
    ({"id": 9, "cmd": "ct.del", "args": {"id": "c1", "force": 1}}, 9, "'force' must be bool"),
    ({"id": 10, "cmd": "ct.stop", "args": {"id": "c1", "timeout": 2**40}}, 10, "out of range"),
    ({"id": 11, "cmd": "ct.exec", "args": {"id": "c1", "argv": ["true"]}, "fds": 3}, 11,
     "announced 3 file descriptors"),
])
def test_a_bad_request_gets_invalid_with_its_id_and_nothing_runs(msg, req_id, words, caplog):
    async def main():
        node = Node("default")
        peer = Peer(node)
        task = peer.dispatcher.receive(msg)
        if task is None:  # refused by the envelope rules, and logged
            assert "bad request" in caplog.text
        else:  # refused by the verb's arguments
            await task
        (reply,) = peer.sent
        assert error_of(reply) == (req_id, "invalid")
        assert words in reply["error"]["message"]
        assert node.ops.names() == [] and peer.dispatcher.tasks == {}
        # A state-changing verb refused is in its history, as failed.
        spec = REGISTRY.get(msg.get("cmd"))
        assert [e["result"] for _, e in node.lines] == (["error"] if spec and spec.mutating else [])
    caplog.set_level("INFO", logger="osctld.dispatch")
    run(main())


def test_an_id_in_flight_is_refused_and_free_again_once_it_is_done():
    async def main():
        node = Node()
        peer = Peer(node)
        slow = peer.dispatcher.receive(protocol.request(1, "dt.wait", {"name": "slow"}))
        quick = await peer.call(2, "dt.fds")  # answered while 1 is in flight
        dup = await peer.call(1, "dt.fds")
        assert error_of(dup) == (1, "invalid") and "already in flight" in dup["error"]["message"]
        assert [m["id"] for m in peer.sent] == [2, 1]
        assert quick == {"id": 2, "ok": {"fds": []}}
        node.go.set()
        await slow
        assert peer.sent[-1] == {"id": 1, "ok": {"name": "slow"}}  # the first one went on
        assert (await peer.call(1, "dt.fds"))["ok"] == {"fds": []}
    run(main())


# --- descriptors ----------------------------------------------------------------------

def pipes(n: int) -> list[int]:
    return [fd for _ in range(n) for fd in os.pipe()][:n]


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_a_request_takes_the_descriptors_it_announced_and_they_are_closed_after():
    async def main():
        peer = Peer(Node())
        fds = pipes(3)
        reply = await peer.call(1, "dt.fds", fds)
        assert reply["ok"] == {"fds": fds}
        assert not any(map(is_open, fds))
    run(main())


def test_a_refused_requests_descriptors_are_closed_and_never_reach_the_next():
    async def main():
        peer = Peer(Node())
        for msg in ({"id": 1, "cmd": "no.such.verb", "fds": 2},      # refused by the command
                    {"id": "x", "cmd": "dt.fds", "fds": 2}):          # refused by the envelope
            fds = pipes(2)
            peer.dispatcher.fds_arrived(fds)
            task = peer.dispatcher.receive(msg)
            if task is not None:
                await task
            assert "error" in peer.sent[-1]
            assert not any(map(is_open, fds)), msg
            assert list(peer.dispatcher.fds) == []
        later = pipes(1)
        assert (await peer.call(3, "dt.fds", later))["ok"] == {"fds": later}
    run(main())


def test_descriptors_announced_but_not_arrived_are_refused_and_those_arrived_are_closed():
    async def main():
        peer = Peer(Node())
        fds = pipes(1)
        peer.dispatcher.fds_arrived(fds)
        assert peer.dispatcher.receive(protocol.request(1, "dt.fds", fds=3)) is None
        assert "announced 3 file descriptors, 1 arrived" in peer.sent[-1]["error"]["message"]
        assert not is_open(fds[0]) and list(peer.dispatcher.fds) == []
        # Descriptors no request took are closed when the connection ends.
        left = pipes(2)
        peer.dispatcher.fds_arrived(left)
        peer.dispatcher.drop_fds()
        assert not any(map(is_open, left))
    run(main())


# --- operations -----------------------------------------------------------------------

def test_operations_are_named_conn_and_id_listed_and_cancelled():
    async def main():
        node = Node()
        peer = Peer(node, conn=7)
        task = peer.dispatcher.receive(protocol.request(1, "dt.wait", {"name": "w"}))
        await asyncio.sleep(0)
        assert (await peer.call(2, "op.ls"))["ok"] == ["7:1"]  # not itself
        assert node.ops.names() == ["7:1"]
        assert error_of(await peer.call(3, "op.cancel", op="7:3")) == (3, "invalid")  # itself
        assert error_of(await peer.call(4, "op.cancel", op="7:99")) == (4, "not_found")
        assert (await peer.call(5, "op.cancel", op="7:1"))["ok"] == {"cancelled": "7:1"}
        await task
        reply = next(m for m in peer.sent if m["id"] == 1)
        assert error_of(reply) == (1, "cancelled")
        assert node.ops.names() == []
    run(main())


def test_shutdown_cancels_every_operation_and_waits_for_its_end():
    async def main():
        node = Node()
        peers = [Peer(node, conn=n) for n in (1, 2)]
        tasks = [p.dispatcher.receive(protocol.request(1, "dt.wait", {"name": "w"})) for p in peers]
        await asyncio.sleep(0)
        assert node.ops.names() == ["1:1", "2:1"]
        await node.ops.cancel_all(timeout=5)
        assert all(t.done() for t in tasks) and node.ops.names() == []
        assert [error_of(p.sent[-1]) for p in peers] == [(1, "cancelled")] * 2
    run(main())


def test_a_gone_caller_cancels_what_served_only_it_and_not_what_changes_state():
    async def main():
        node = Node("default")
        node.registry.pools["default"].cts["c1"] = object()
        peer = Peer(node)
        read = peer.dispatcher.receive(protocol.request(1, "dt.wait", {"name": "r"}))
        change = peer.dispatcher.receive(protocol.request(2, "ct.dt.touch", {"id": "c1"}))
        await asyncio.sleep(0)
        peer.dispatcher.caller_gone()
        await read
        assert not change.done()
        node.go.set()
        await change
        assert [m.get("ok", m.get("error", {}).get("code")) for m in peer.sent] == ["cancelled", {"vm": False}]
    run(main())


def test_a_reply_that_cannot_be_encoded_still_ends_the_request():
    async def main():
        peer = Peer(Node())
        reply = await peer.call(1, "dt.huge")
        assert error_of(reply) == (1, "internal")
        assert reply["error"]["details"]["reference"] in reply["error"]["message"]
    run(main())


# --- command events and history --------------------------------------------------------

def command_events(node: Node) -> list[tuple]:
    sub = node.events.subscribe(on_overflow=lambda: None)
    out: list[tuple] = []

    def take() -> list[tuple]:
        while not sub.queue.empty():
            ev = sub.queue.get_nowait()
            out.append((ev["phase"], ev["cmd"], ev["op"], ev.get("error")))
        return out
    return take


def test_a_state_changing_verb_is_announced_and_written_to_its_targets_pool():
    async def main():
        node = Node("default", "p2")
        node.registry.pools["p2"].cts["c1"] = object()
        node.registry.pools["p2"].vms["v1"] = object()
        events = command_events(node)
        peer = Peer(node, conn=3)
        node.go.set()
        await peer.call(1, "ct.dt.touch", id="c1")
        await peer.call(2, "vm.dt.touch", id="v1")
        await peer.call(3, "ct.dt.touch", id="nope")  # not there: the default pool
        await peer.call(4, "dt.wait", name="read-only")  # neither announced nor written
        assert events() == [("run", "ct.dt.touch", "3:1", None), ("done", "ct.dt.touch", "3:1", None),
                            ("run", "vm.dt.touch", "3:2", None), ("done", "vm.dt.touch", "3:2", None),
                            ("run", "ct.dt.touch", "3:3", None), ("done", "ct.dt.touch", "3:3", None)]
        assert [pool for pool, _ in node.lines] == ["p2", "p2", None]
        assert node.lines[0][1] == {"cmd": "ct.dt.touch", "object": "ct", "id": "c1", "args": {"id": "c1"},
                                    "account": "root", "uid": 0, "pid": 4242, "result": "ok"}
    run(main())


def test_an_old_name_runs_as_the_verb_it_stands_for():
    async def main():
        node = Node("default", "p2")
        node.registry.pools["p2"].vms["v1"] = object()
        events = command_events(node)
        peer = Peer(node)
        node.go.set()
        assert (await peer.call(1, "dt.old.touch", id="v1", vm=True))["ok"] == {"vm": True}
        assert (await peer.call(2, "dt.old.touch", id="c1"))["ok"] == {"vm": False}
        assert error_of(await peer.call(3, "dt.old.touch", id="c1", vm="yes")) == (3, "invalid")
        assert error_of(await peer.call(4, "vm.dt.touch", id="v1", vm=True)) == (4, "invalid")
        assert [e[1] for e in events()][:2] == ["vm.dt.touch", "vm.dt.touch"]
        assert node.lines[0] == ("p2", {"cmd": "vm.dt.touch", "object": "vm", "id": "v1", "args": {"id": "v1"},
                                        "account": "root", "uid": 0, "pid": 4242, "result": "ok"})
    run(main())


def test_history_goes_to_the_pool_as_it_was_before_and_as_it_is_after():
    async def main():
        node = Node("default")
        events = command_events(node)
        peer = Peer(node)
        await peer.call(1, "dt.pool.add", name="new", password="s3cret")  # there only after
        await peer.call(2, "dt.pool.drop", name="new", fail=True)
        await peer.call(3, "dt.pool.drop", name="new")  # there only before
        await peer.call(4, "dt.pool.drop", name="never")
        await peer.call(5, "dt.pool.drop", name=5)  # bad arguments: not run, not announced
        assert [(pool, e["cmd"], e["result"]) for pool, e in node.lines] == [
            ("new", "dt.pool.add", "ok"), ("new", "dt.pool.drop", "error"),
            ("new", "dt.pool.drop", "ok"), (None, "dt.pool.drop", "error"),
            (None, "dt.pool.drop", "error")]
        assert node.lines[0][1]["args"] == {"name": "new", "password": "***"}
        assert node.lines[1][1]["error"] == "it is busy"
        assert "not found" in node.lines[3][1]["error"]
        assert [e[0] for e in events()] == ["run", "done", "run", "failed", "run", "done",
                                            "run", "failed", "failed"]
    run(main())


def test_command_events_name_the_object_its_pool_and_the_arguments():
    async def main():
        node = Node("default", "p2")
        node.registry.pools["p2"].cts["c1"] = object()
        sub = node.events.subscribe(on_overflow=lambda: None)
        peer = Peer(node)
        node.go.set()
        await peer.call(1, "ct.dt.touch", id="c1")
        await peer.call(2, "dt.pool.add", name="new", password="s3cret")
        evs = [sub.queue.get_nowait() for _ in range(sub.queue.qsize())]
        assert [(e["phase"], e["object"], e["id"], e["pool"], e["args"]) for e in evs] == [
            ("run", "ct", "c1", "p2", {"id": "c1"}), ("done", "ct", "c1", "p2", {"id": "c1"}),
            # Not there before it runs; there after, and its password never shown.
            ("run", "pool", "new", None, {"name": "new", "password": "***"}),
            ("done", "pool", "new", "new", {"name": "new", "password": "***"})]
    run(main())


@pytest.mark.parametrize("mutating, target", [
    (True, None),                            # no target
    (True, Target("ct", "id")),              # not among its arguments
    (True, Target("user", "name", pool_arg="pool")),
    (False, Target("pool", "name")),         # a read-only verb writes no history
])
def test_a_verb_names_its_target_among_its_arguments_if_and_only_if_it_changes_state(mutating, target):
    with pytest.raises(RuntimeError, match="names its target"):
        command("dt.bad", mutating=mutating, target=target)(pool_add_like)
    assert "dt.bad" not in REGISTRY


def test_every_state_changing_verb_names_its_target():
    assert all(s.target is not None for s in REGISTRY.values() if s.mutating)


async def pool_add_like(ctx, name: str) -> dict:
    """A verb with no ``id``."""
    return {}


@pytest.mark.parametrize("cmd, args, pool", [
    ("ct.start", {"id": "c1"}, "p2"),
    ("ct.start", {"id": "p2:c1"}, "p2"),
    ("vm.stop", {"id": "v1"}, "p2"),
    ("vm.netif.ip.add", {"id": "v1", "name": "eth0", "address": "192.0.2.1"}, "p2"),
    ("ct.netif.ip.add", {"id": "c1", "name": "eth0", "address": "192.0.2.1"}, "p2"),
    ("ct.new", {"id": "x", "user": "u"}, "p2"),
    ("ct.new", {"id": "x", "user": "u", "pool": "p2"}, "p2"),
    ("user.new", {"name": "u2"}, "default"),
    ("user.new", {"name": "u2", "pool": "p2"}, "p2"),
    ("user.del", {"name": "p2:u"}, "p2"),
    ("group.new", {"path": "/g"}, "default"),
    ("pool.export", {"name": "p2"}, "p2"),
    ("pool.import", {"path": "/nonexistent/pools/p2/"}, "p2"),
])
def test_the_wire_verbs_name_the_pool_of_their_history_line(cmd, args, pool):
    node = Node("default", "p2")
    p2 = node.registry.pools["p2"]
    p2.cts["c1"], p2.vms["v1"], p2.users["u"] = object(), object(), object()
    assert REGISTRY[cmd].target.pool(node.registry, args) == pool
