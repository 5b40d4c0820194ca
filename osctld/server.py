"""The Unix-socket server: peer credentials, framing, bounds, hang-ups.

Each connection reads with recvmsg(2), so a request may carry file
descriptors (SCM_RIGHTS) alongside its frame. Decoded messages and the
descriptors go to the connection's dispatcher (``osctld/dispatch.py``),
which checks and runs each request as its own task and answers through
``Connection.send``: several may be in flight on one connection, replies go
out as each finishes. Nothing a client sends can take the daemon down; an
undecodable stream closes that one connection.

A connection is bounded: past MAX_IN_FLIGHT requests running or MAX_QUEUED
bytes of replies not yet taken, the daemon reads nothing more from it until
there is room, so a client that sends and never reads blocks in its own
send(2), and costs the daemon no more than those bounds. Requests start one
at a time with a turn of the event loop in between, so other connections
are served meanwhile. When a client goes, what it had sent but the daemon
had not started yet is dropped, and its operations that only serve the
caller (the read-only ones, and exec, attach, console: what runs there is
killed) are cancelled; mutating ones run on to their end or roll back.

The daemon listens on two sockets: root's own (0600 root, root alone may
talk there) and, if the config names it, the account socket (0660, group
``account_group``), which answers only host users registered as accounts
(``osctl account new``) and runs their requests as those accounts
(``Caller.account``: the dispatcher checks their permissions).
"""

from __future__ import annotations

import array
import asyncio
import itertools
import logging
import os
import select
import socket
import struct
from pathlib import Path

from osctl import protocol
from osctl.protocol import DENIED, INVALID, MAX_FDS, OsctlError

from . import __version__
from .accounts import sees_event
from .commands import load_all
from .dispatch import Caller, Dispatcher
from .events import Filter

log = logging.getLogger(__name__)
_conn_ids = itertools.count(1)
# Descriptors a connection may have received ahead of the requests they go with.
MAX_PENDING_FDS = 4 * MAX_FDS
# Per connection: requests running at once, and bytes of replies waiting for
# the client to read them. Past either, the connection is not read from.
MAX_IN_FLIGHT = 64
MAX_QUEUED = 1024 * 1024


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)  # pid, uid, gid


async def hung_up(sock: socket.socket) -> None:
    """Return once the peer has closed its end, whatever it left unread (a
    readable socket may only hold more requests)."""
    loop = asyncio.get_running_loop()
    with select.epoll(1) as ep:
        ep.register(sock.fileno(), 0)  # EPOLLHUP is reported whatever is asked
        fut = loop.create_future()
        loop.add_reader(ep.fileno(), lambda: fut.done() or fut.set_result(None))
        try:
            await fut
        finally:
            loop.remove_reader(ep.fileno())


class Connection:
    def __init__(self, server: "Server", sock: socket.socket):
        self.server = server
        self.node = server.node
        self.sock = sock
        self.id = next(_conn_ids)
        self.pid, self.uid, self.gid = peer_credentials(sock)
        self.decoder = protocol.Decoder(server.max_frame)
        self.dispatcher = Dispatcher(self.node,
                                     Caller(self.id, self.pid, self.uid, server.accounts),
                                     self.send, self.subscribe)
        # One ordered queue of outgoing frames: a progress message can never
        # overtake the final reply of its request.
        self.outgoing: asyncio.Queue[bytes] = asyncio.Queue()
        self.queued = 0  # bytes in ``outgoing``
        self.room = asyncio.Event()  # set whenever a bound may have eased
        self._hangup = select.poll()  # no descriptor of its own: polls the socket
        self._hangup.register(sock.fileno(), 0)
        self.writer: asyncio.Task | None = None
        self.closed = False
        self.subscription = None
        self.pump: asyncio.Task | None = None

    def __repr__(self) -> str:
        return str(self.dispatcher.caller)

    # --- I/O ------------------------------------------------------------------

    async def _recv(self) -> tuple[bytes, list[int]]:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data, anc, flags, _ = self.sock.recvmsg(
                    65536, socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize))
                fds: list[int] = []
                for level, typ, payload in anc:
                    if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                        a = array.array("i")
                        a.frombytes(payload[: len(payload) - len(payload) % a.itemsize])
                        fds += list(a)
                if flags & socket.MSG_CTRUNC:
                    for fd in fds:
                        os.close(fd)
                    raise OSError("file descriptors cut short (MSG_CTRUNC)")
                return data, fds
            except (BlockingIOError, InterruptedError):
                fut = loop.create_future()
                loop.add_reader(self.sock.fileno(), lambda: fut.done() or fut.set_result(None))
                try:
                    await fut
                finally:
                    loop.remove_reader(self.sock.fileno())

    def send(self, msg: dict) -> None:
        """Encode and queue one message: the one place replies are encoded
        (``protocol.EncodeError`` for a value msgpack cannot carry)."""
        if not self.closed:
            data = protocol.encode(msg)
            self.queued += len(data)
            self.outgoing.put_nowait(data)

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await self.outgoing.get()
            try:
                await loop.sock_sendall(self.sock, data)
            except OSError:
                self.close()
                return
            finally:
                self.queued -= len(data)
                self.room.set()
                self.outgoing.task_done()

    def _has_room(self) -> bool:
        return len(self.dispatcher.tasks) < MAX_IN_FLIGHT and self.queued < MAX_QUEUED

    def _peer_gone(self) -> bool:
        return bool(self._hangup.poll(0))

    async def _wait_for_room(self) -> bool:
        """Wait until the connection is within its bounds; False if the peer
        hung up (or the connection was closed) meanwhile."""
        if not self._has_room():
            hangup = asyncio.create_task(hung_up(self.sock))
            try:
                while not (self._has_room() or self.closed or hangup.done()):
                    self.room.clear()
                    room = asyncio.create_task(self.room.wait())
                    await asyncio.wait([room, hangup], return_when=asyncio.FIRST_COMPLETED)
                    room.cancel()
            finally:
                hangup.cancel()
        return not self.closed and not self._peer_gone()

    async def flush(self) -> None:
        """Wait until every queued frame is written (or dropped with the peer)."""
        await self.outgoing.join()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.subscription:
            self.subscription.close()
            self.pump.cancel()
        if self.writer:
            self.writer.cancel()
        while not self.outgoing.empty():  # nobody will write these now
            self.queued -= len(self.outgoing.get_nowait())
            self.outgoing.task_done()
        self.room.set()
        self.dispatcher.caller_gone()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # --- requests -------------------------------------------------------------

    def _refused(self) -> tuple[str, str] | None:
        """Why this peer may not talk here, if it may not: for the log, for it."""
        if not self.server.accounts:
            return None if self.uid == 0 else ("not root", "osctld answers root only on this socket")
        if self.node.accounts.by_uid(self.uid) is None:
            return "no account", f"uid {self.uid} is no osctld account"
        return None

    async def run(self) -> None:
        self.writer = asyncio.create_task(self._write())
        try:
            refused = self._refused()
            if refused:
                log.warning("%r: refused, %s", self, refused[0])
                self.send(protocol.error(None, OsctlError(DENIED, refused[1])))
                await self.flush()
                return
            self.send({**protocol.greeting(__version__), "conn": self.id})
            while not self.closed:
                try:
                    data, fds = await self._recv()
                except OSError as e:
                    log.info("%r: %s; closing the connection", self, e)
                    break
                self.dispatcher.fds_arrived(fds)
                if len(self.dispatcher.fds) > MAX_PENDING_FDS:
                    log.warning("%r: %d file descriptors sent for no request; closing",
                                self, len(self.dispatcher.fds))
                    break
                if not data:
                    break
                try:
                    msgs = self.decoder.feed(data)
                except protocol.FrameError as e:
                    log.warning("%r: %s; closing the connection", self, e)
                    self.send(protocol.error(None, OsctlError(INVALID, str(e))))
                    await self.flush()
                    break
                for i, msg in enumerate(msgs):
                    if not await self._wait_for_room():
                        log.info("%r: gone; %d requests it sent were not started", self, len(msgs) - i)
                        return
                    task = self.dispatcher.receive(msg)
                    if task is not None:
                        task.add_done_callback(lambda _t: self.room.set())
                    await asyncio.sleep(0)  # other connections' turn
        finally:
            self.close()
            self.dispatcher.drop_fds()
            self.sock.close()

    # --- events ---------------------------------------------------------------

    def subscribe(self, filter: Filter) -> None:
        if self.subscription is not None:
            raise OsctlError(INVALID, "this connection is already subscribed")
        self.subscription = self.node.events.subscribe(
            on_overflow=self.close, filter=filter,
            visible=(lambda ev: sees_event(self.dispatcher.access(), ev)) if self.server.accounts
            else None)
        self.pump = asyncio.create_task(self._pump(self.subscription))

    async def _pump(self, sub) -> None:
        while not sub.closed and not self.closed:
            ev = await sub.queue.get()
            self.send(protocol.event(ev))
            # Hand over one event at a time, so the bounded subscription
            # queue (not the socket queue) is what fills when the peer lags.
            await self.flush()


class Server:
    """One listening socket: root's (``gid`` None), or the account socket
    (``accounts``; ``gid`` the group that may connect, None: any user)."""

    def __init__(self, node, path: Path, max_frame: int, accounts: bool = False,
                 gid: int | None = None):
        self.node = node
        self.path = Path(path)
        self.max_frame = max_frame
        self.accounts = accounts
        self.gid = gid
        self.sock: socket.socket | None = None
        self._accept_task: asyncio.Task | None = None
        self.connections: set[Connection] = set()
        load_all()

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(self.path))
            except OSError:
                self.path.unlink()  # stale, left by a killed daemon
            else:
                raise RuntimeError(f"another osctld is listening on {self.path}")
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        if self.accounts:
            # Whom the Unix group lets in may connect; only accounts are answered.
            os.chown(self.path, 0, -1 if self.gid is None else self.gid)
            os.chmod(self.path, 0o666 if self.gid is None else 0o660)
        else:
            os.chmod(self.path, 0o600)
        sock.listen(128)
        sock.setblocking(False)
        self.sock = sock
        self._accept_task = asyncio.create_task(self._accept())

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn_sock, _ = await loop.sock_accept(self.sock)
            except OSError as e:
                log.warning("accept failed: %s", e)
                await asyncio.sleep(0.1)
                continue
            conn_sock.setblocking(False)
            conn = Connection(self, conn_sock)
            self.connections.add(conn)
            task = asyncio.create_task(conn.run())
            task.add_done_callback(lambda _t, c=conn: self.connections.discard(c))

    async def close(self) -> None:
        if self._accept_task:
            self._accept_task.cancel()
        if self.sock:
            self.sock.close()
        for conn in list(self.connections):
            conn.close()
