"""A small QMP client: JSON lines over QEMU's monitor socket, with asyncio.

The daemon keeps one connection open per running VM. Replies are matched to
commands by the ``id`` QMP echoes; events (POWERDOWN, SHUTDOWN, ...) go to a
callback; the end of the stream means QEMU has exited, which is how the
daemon learns that a VM stopped, guest-initiated or not, without polling.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import socket
from typing import Any, Callable

from osctl.protocol import INTERNAL, OsctlError

log = logging.getLogger(__name__)


class QmpError(OsctlError):
    def __init__(self, message: str, qmp_class: str | None = None):
        super().__init__(INTERNAL, message, {"qmp_class": qmp_class} if qmp_class else None)
        self.qmp_class = qmp_class


class Qmp:
    def __init__(self, on_event: Callable[[dict], None] | None = None,
                 on_close: Callable[[], None] | None = None):
        self.on_event = on_event or (lambda ev: None)
        self.on_close = on_close or (lambda: None)
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task | None = None
        self.closed = asyncio.Event()
        self.greeting: dict = {}

    @classmethod
    async def connect(cls, path: str, timeout: float = 10, **callbacks: Any) -> "Qmp":
        """Connect, read the greeting and leave capabilities negotiation mode."""
        self = cls(**callbacks)
        try:
            reader, self._writer = await asyncio.wait_for(
                asyncio.open_unix_connection(path, limit=1 << 20), timeout)
            self.greeting = json.loads(await asyncio.wait_for(reader.readline(), timeout))
        except (OSError, asyncio.TimeoutError, ValueError) as e:
            if self._writer:
                self._writer.close()
            raise QmpError(f"cannot talk QMP on {path}: {e or type(e).__name__}") from None
        self._reader_task = asyncio.create_task(self._read(reader))
        await self.execute("qmp_capabilities", timeout=timeout)
        return self

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    msg = json.loads(line)
                except ValueError:
                    log.warning("QMP: undecodable line %r", line[:200])
                    continue
                if "event" in msg:
                    self.on_event(msg)
                    continue
                fut = self._pending.pop(msg.get("id"), None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
        except (OSError, asyncio.IncompleteReadError, ValueError) as e:
            log.debug("QMP connection ended: %s", e)
        finally:
            self._finish()

    def _finish(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        if self._writer:
            self._writer.close()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(QmpError("QEMU closed its monitor connection"))
        self._pending.clear()
        self.on_close()

    async def execute(self, cmd: str, arguments: dict | None = None, timeout: float = 30,
                      fds: list[int] = ()) -> Any:
        """Run one QMP command and return its ``return`` value. ``fds`` go with
        it (SCM_RIGHTS), for ``getfd``: a socket the daemon bound, handed over."""
        if self.closed.is_set() or self._writer is None:
            raise QmpError(f"QMP {cmd}: not connected")
        req_id = next(self._ids)
        msg = {"execute": cmd, "id": req_id, **({"arguments": arguments} if arguments else {})}
        fut = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        try:
            if fds:
                await self._send_fds(json.dumps(msg).encode() + b"\n", fds)
            else:
                self._writer.write(json.dumps(msg).encode() + b"\n")
                await self._writer.drain()
            reply = await asyncio.wait_for(fut, timeout)
        except (OSError, asyncio.TimeoutError) as e:
            raise QmpError(f"QMP {cmd}: {e or type(e).__name__}") from None
        finally:
            self._pending.pop(req_id, None)
        if "error" in reply:
            err = reply["error"]
            raise QmpError(f"QMP {cmd}: {err.get('desc', err)}", err.get("class"))
        return reply.get("return")

    async def _send_fds(self, data: bytes, fds: list[int]) -> None:
        """One message with descriptors, past the stream writer (which cannot
        pass them) once what it holds has gone out, so the order stays."""
        assert self._writer is not None
        await self._writer.drain()
        if self._writer.transport.get_write_buffer_size():
            raise OSError("QMP writer still busy")
        raw = self._writer.get_extra_info("socket")
        with socket.socket(fileno=os.dup(raw.fileno())) as sock:
            if socket.send_fds(sock, [data], fds) != len(data):
                raise OSError("short write with descriptors")

    async def wait_closed(self, timeout: float | None) -> bool:
        """True once QEMU has gone (its end of the socket closed) within ``timeout``."""
        try:
            await asyncio.wait_for(self.closed.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    def close(self) -> None:
        """Drop our end; QEMU keeps running (used when the daemon shuts down)."""
        self.on_close = lambda: None
        if self._reader_task:
            self._reader_task.cancel()
        if self._writer:
            self._writer.close()
