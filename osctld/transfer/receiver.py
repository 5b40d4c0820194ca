"""The receive socket (``<run_dir>/receive/receive.sock``): where the forced
command of an SSH login as the receive user hands its call to the daemon.

Only the receive user may connect (the socket is its, 0600, and SO_PEERCRED
is checked as well). A connection carries one request, a JSON line
``{verb, args, key, peer}`` sent with the SSH session's stdin and stdout as
SCM_RIGHTS descriptors, and gets one JSON line back, ``{ok: result}`` or
``{error: {code, message}}`` (``osctl/protocol.py``'s shapes), with the
``status`` the forced command exits with. JSON, not msgpack: the forced
command runs with the standard library only. If the forced command goes (the
sender hung up, or cancelled), the verb is cancelled and rolls back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pwd
import socket
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from osctl.protocol import CANCELLED, DENIED, INTERNAL, INVALID, OsctlError, exit_code

from . import receive_verbs

if TYPE_CHECKING:
    from ..node import Node

log = logging.getLogger(__name__)
MAX_REQUEST = 256 * 1024  # SSH_ORIGINAL_COMMAND's JSON, and a little more
PASSED_FDS = 2  # stdin, stdout


def receive_uid(user: str | None) -> int | None:
    """The receive user's uid; None if there is none (receiving is off)."""
    if user is None:
        return None
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def _read_request(sock: socket.socket) -> tuple[Any, list[int]]:
    """One request and the descriptors it came with (blocking, bounded by the
    socket's timeout): run in a thread."""
    fds: list[int] = []
    line = b""
    while not line.endswith(b"\n"):
        data, got, _flags, _ = socket.recv_fds(sock, 65536, PASSED_FDS)
        fds += got
        line += data
        if not data or len(line) > MAX_REQUEST:
            for fd in fds:
                os.close(fd)
            raise OsctlError(INVALID, "the request ended early, or is too long")
    try:
        return json.loads(line), fds
    except ValueError:
        for fd in fds:
            os.close(fd)
        raise OsctlError(INVALID, "the request is no JSON") from None


class Receiver:
    def __init__(self, node: Node, path: Path, uid: int):
        self.node = node
        self.path = Path(path)
        self.uid = uid
        self.sock: socket.socket | None = None
        self._accept: asyncio.Task | None = None
        self.tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self.path))  # not listening yet: nobody can connect meanwhile
        os.chmod(self.path, 0o600)
        os.chown(self.path, self.uid, -1)
        sock.listen(64)
        sock.setblocking(False)
        self.sock = sock
        self._accept = asyncio.create_task(self._serve())

    def close(self) -> None:
        if self._accept:
            self._accept.cancel()
        if self.sock:
            self.sock.close()
        self.path.unlink(missing_ok=True)

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(self.sock)
            task = asyncio.create_task(self._one(conn))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _one(self, conn: socket.socket) -> None:
        fds: list[int] = []
        reply: dict
        try:
            _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
            if uid != self.uid:
                raise OsctlError(DENIED, "only the receive user may use this socket")
            conn.settimeout(10)
            try:
                msg, fds = await asyncio.to_thread(_read_request, conn)
            except OSError as e:
                raise OsctlError(INVALID, f"bad receive request: {e}") from None
            if not isinstance(msg, dict):
                raise OsctlError(INVALID, "a receive request is a JSON object")
            verb, args = msg.get("verb"), msg.get("args")
            key, peer = msg.get("key"), msg.get("peer")
            if not all(isinstance(v, str) for v in (verb, key, peer)):
                raise OsctlError(INVALID, "a receive request names its verb, key and peer")
            stdin, stdout = (fds + [None, None])[:2]
            conn.setblocking(False)
            log.info("receive %s from %s with key %s", verb, peer, key)
            work = asyncio.create_task(receive_verbs.run(self.node, key, peer, verb, args,
                                                         stdin, stdout))
            gone = asyncio.create_task(asyncio.get_running_loop().sock_recv(conn, 1))
            await asyncio.wait([work, gone], return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                log.warning("receive %s from %s: the sender went; cancelling", verb, peer)
                work.cancel()
                await asyncio.wait([work])
            gone.cancel()
            reply = {"ok": work.result(), "status": 0}
        except OsctlError as e:
            reply = {"error": e.to_wire(), "status": exit_code(e.code)}
        except asyncio.CancelledError:
            reply = {"error": {"code": CANCELLED, "message": "cancelled"}, "status": exit_code(CANCELLED)}
        except Exception:
            log.exception("receive request failed")
            reply = {"error": OsctlError(INTERNAL, "internal error on the receiving node; "
                                                   "see its daemon log").to_wire(), "status": 1}
        finally:
            for fd in fds:
                os.close(fd)
        if reply.get("error"):
            log.info("receive refused: %s", reply["error"].get("message"))
        try:
            conn.setblocking(True)
            conn.sendall(json.dumps(reply, default=str).encode() + b"\n")
        except OSError:
            pass
        finally:
            conn.close()
