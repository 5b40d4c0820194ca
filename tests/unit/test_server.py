"""A connection's bounds and its end, on a socket pair with stand-in commands (no root)."""

from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace

import pytest

from osctl import protocol
from osctld import server
from osctld.commands import REGISTRY, Target, command
from osctld.events import EventBus
from osctld.ops import Ops
from osctld.state import Registry


class Node:
    """What a connection needs of the node."""

    def __init__(self):
        self.ops = Ops()
        self.registry = Registry()
        self.events = EventBus()
        self.started: list[str] = []
        self.ended: list[str] = []
        self.go = asyncio.Event()
        self.history = SimpleNamespace(write=lambda pool, entry: None)


@pytest.fixture(scope="module", autouse=True)
def verbs():
    @command("test.wait")
    async def wait(ctx, name: str) -> dict:
        """Waits until the test lets it go."""
        ctx.node.started.append(name)
        try:
            await ctx.node.go.wait()
        finally:
            ctx.node.ended.append(name)
        return {"name": name}

    @command("test.change", mutating=True, target=Target("pool", "name"))
    async def change(ctx, name: str) -> dict:
        """Waits like test.wait, but changes state."""
        return await wait(ctx, name)

    try:
        yield
    finally:
        del REGISTRY["test.wait"], REGISTRY["test.change"]


async def connect(node: Node):
    """A connection served as root, and the client's end of it."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    conn = server.Connection(SimpleNamespace(node=node, max_frame=65536, accounts=False), ours)
    conn.uid = 0
    task = asyncio.create_task(conn.run())
    theirs.setblocking(False)
    return conn, task, theirs


async def settle(seconds: float = 0.2) -> None:
    await asyncio.sleep(seconds)


def send_all_it_takes(sock: socket.socket, data: bytes) -> int:
    """Send without blocking until the kernel takes no more; bytes taken."""
    taken = 0
    while taken < len(data):
        try:
            taken += sock.send(data[taken:])
        except BlockingIOError:
            break
    return taken


def requests(cmd: str, count: int, first: int = 1) -> bytes:
    return b"".join(protocol.encode(protocol.request(i, cmd, {"name": str(i)}))
                    for i in range(first, first + count))


def test_a_client_that_pipelines_gets_no_more_than_the_bound_in_flight():
    async def main():
        d = Node()
        conn, task, client = await connect(d)
        data = requests("test.wait", 20_000)  # more than the kernel's buffers hold
        taken = 0
        for _ in range(20):
            taken += send_all_it_takes(client, data[taken:])
            await settle(0.05)
        assert len(d.started) == server.MAX_IN_FLIGHT
        assert taken < len(data), "the daemon read on past its bound"
        d.go.set()  # room again: it goes on reading
        for _ in range(500):
            taken += send_all_it_takes(client, data[taken:])
            drain(client)
            await settle(0.01)
            if len(d.started) == 20_000:
                break
        assert taken == len(data) and len(d.started) == 20_000
        client.close()
        await task
    asyncio.run(main())


def drain(sock: socket.socket) -> None:
    try:
        while sock.recv(65536):
            pass
    except BlockingIOError:
        pass


def test_a_client_that_never_reads_is_bounded_by_its_queued_replies():
    async def main():
        d = Node()
        d.go.set()  # answered at once: only the replies pile up
        conn, task, client = await connect(d)
        data = requests("test.wait", 200_000)
        taken = 0
        for _ in range(40):
            taken += send_all_it_takes(client, data[taken:])
            await settle(0.02)
        assert taken < len(data)
        assert conn.queued <= server.MAX_QUEUED + server.MAX_IN_FLIGHT * 100  # those in flight at the bound
        client.close()
        await task
    asyncio.run(main())


def test_a_gone_client_has_its_backlog_dropped_and_its_caller_bound_work_cancelled():
    async def main():
        d = Node()
        conn, task, client = await connect(d)
        client.send(protocol.encode(protocol.request(1, "test.change", {"name": "change"})))
        client.send(protocol.encode(protocol.request(2, "test.wait", {"name": "exec"})))
        await settle()
        client.send(requests("test.wait", 1000, first=10))  # sent, never started
        client.close()
        await asyncio.wait_for(task, 5)
        await settle()
        assert d.started == ["change", "exec"]
        assert d.ended == ["exec"]  # cancelled with its caller; the change runs on
        d.go.set()
        await settle()
        assert sorted(d.ended) == sorted(d.started)
        assert "change" in d.ended and d.ops.names() == []
    asyncio.run(main())
