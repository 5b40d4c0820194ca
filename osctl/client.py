"""A blocking client for osctld, small enough for a frontend to embed.

``Client.call`` sends one request and returns its result (or raises
OsctlError with the daemon's code). Progress messages go to a callback.
Local file descriptors can be handed to the daemon with the request
(SCM_RIGHTS), which is how ``ct exec`` and ``ct attach`` run a process
directly on the caller's terminal or pipes, with no copying in between.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Callable, Collection, Iterator, Sequence

from . import protocol
from .protocol import INVALID, OsctlError

DEFAULT_SOCKET = "/run/osctld/osctld.sock"


def default_socket() -> str:
    return os.environ.get("OSCTLD_SOCKET", DEFAULT_SOCKET)


class Client:
    def __init__(self, path: str | None = None, timeout: float | None = None):
        self.path = path or default_socket()
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.server_info: dict = {}
        self._decoder = protocol.Decoder()
        self._inbox: list[dict] = []  # replies to other requests, kept for later
        self._pending: list[dict] = []  # decoded, not yet read
        self._next_id = 1

    # --- connection ---------------------------------------------------------

    def connect(self) -> "Client":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError as e:
            sock.close()
            # The socket (or its directory) is root's: so is osctld.
            code = protocol.DENIED if isinstance(e, PermissionError) else protocol.INTERNAL
            why = ("permission denied (osctl needs root; an account uses the account socket)"
                   if code == protocol.DENIED else e.strerror or e)
            raise OsctlError(code, f"cannot connect to osctld at {self.path}: {why}") from None
        self.sock = sock
        hello = self._read()
        if "error" in hello:  # refused at the door (not root)
            self.close()
            raise OsctlError.from_wire(hello["error"])
        if hello.get("protocol") != protocol.PROTOCOL_VERSION:
            self.close()
            raise OsctlError(
                protocol.UNSUPPORTED,
                f"daemon speaks protocol {hello.get('protocol')!r}, "
                f"this client {protocol.PROTOCOL_VERSION}",
            )
        self.server_info = hello
        return self

    def _socket(self) -> socket.socket:
        if self.sock is None:
            raise OsctlError(protocol.INTERNAL, "the connection to osctld is closed")
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> "Client":
        if self.sock is None:
            self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- requests -----------------------------------------------------------

    def send(self, cmd: str, args: dict | None = None, fds: Sequence[int] = ()) -> int:
        """Send a request without waiting; returns its id (see ``wait``)."""
        sock = self.sock or self.connect()._socket()
        req_id = self._next_id
        try:
            data = protocol.encode(protocol.request(req_id, cmd, args, len(fds)))
        except protocol.EncodeError as e:  # e.g. osctl ct stop -t 99999999999999999999
            raise OsctlError(INVALID, f"{cmd}: an argument is out of range: {e}") from None
        self._next_id += 1
        if fds:
            sent = socket.send_fds(sock, [data], list(fds))
            data = data[sent:]
        if data:
            sock.sendall(data)
        return req_id

    def wait(self, req_id: int, on_progress: Callable[[dict], None] | None = None) -> Any:
        def progress(_req: int, data: dict) -> None:
            if on_progress:
                on_progress(data)

        _, result, error = self.wait_any({req_id}, progress)
        if error is not None:
            raise error
        return result

    def wait_any(self, req_ids: Collection[int],
                 on_progress: Callable[[int, dict], None] | None = None
                 ) -> tuple[int, Any, OsctlError | None]:
        """The first of several requests in flight to end: its id, and its
        result or its error (not raised: the others still run)."""
        while True:
            msg = self._take(req_ids)
            if "progress" in msg:
                if on_progress:
                    on_progress(msg["id"], msg["progress"])
                continue
            if "error" in msg:
                return msg["id"], None, OsctlError.from_wire(msg["error"])
            return msg["id"], msg.get("ok"), None

    def call(
        self,
        cmd: str,
        args: dict | None = None,
        *,
        fds: Sequence[int] = (),
        on_progress: Callable[[dict], None] | None = None,
    ) -> Any:
        return self.wait(self.send(cmd, args, fds), on_progress)

    def events(self, **filters: Any) -> Iterator[dict]:
        """Subscribe and yield events until the connection ends."""
        self.call("event.subscribe", filters)
        while True:
            msg = self._read()
            if "event" in msg:
                yield msg["event"]

    # --- reading ------------------------------------------------------------

    def _take(self, req_ids: Collection[int]) -> dict:
        for i, msg in enumerate(self._inbox):
            if msg.get("id") in req_ids:
                return self._inbox.pop(i)
        while True:
            msg = self._read()
            if msg.get("id") in req_ids:
                return msg
            if msg.get("id") is None and "error" in msg:
                raise OsctlError.from_wire(msg["error"])
            self._inbox.append(msg)

    def _read(self) -> dict:
        while not self._pending:
            data = self._socket().recv(65536)
            if not data:
                raise OsctlError(protocol.INTERNAL, "osctld closed the connection")
            try:
                self._pending.extend(self._decoder.feed(data))
            except protocol.FrameError as e:
                raise OsctlError(protocol.INTERNAL, f"bad data from osctld: {e}") from None
        return self._pending.pop(0)
