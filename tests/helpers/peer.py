"""A dispatcher driven without a socket, for unit tests of osctld/dispatch.py."""

from __future__ import annotations

from osctl import protocol
from osctld.dispatch import Caller, Dispatcher


class Peer:
    """A dispatcher and the messages it sent back, as a client decodes them:
    root on its own socket, or (``account``) a uid on the account socket."""

    def __init__(self, node, conn: int = 7, uid: int = 0, account: bool = False):
        self.node = node
        self.sent: list[dict] = []
        self.dispatcher = Dispatcher(node, Caller(conn, 4242, uid, account), self.send)

    def send(self, msg: dict) -> None:
        self.sent.append(protocol.Decoder().feed(protocol.encode(msg))[0])

    async def call(self, req_id: int, cmd: str, fds: list[int] = (), **args) -> dict:
        """Send one request (with ``fds`` arrived beside it), wait for its reply."""
        self.dispatcher.fds_arrived(list(fds))
        task = self.dispatcher.receive(protocol.request(req_id, cmd, args, fds=len(fds)))
        if task is not None:
            await task
        return next(m for m in reversed(self.sent) if m["id"] == req_id)
