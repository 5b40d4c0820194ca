"""Relay a caller's terminal to a VM's serial console socket.

The caller passes its stdin and stdout (SCM_RIGHTS, as for ``ct attach``)
and the read end of a pipe whose write end only it holds (its lifeline: the
pipe ends when the caller does, however it dies); the daemon copies bytes
both ways in its event loop until the caller types the escape (Ctrl-a q),
its input ends, the caller goes, or the VM goes away. No process is
forked and the console socket's path never leaves the daemon. The caller
puts its own terminal in raw mode; the descriptors' flags, which the caller
shares with us, are restored afterwards.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path

ESCAPE = b"\x01q"  # Ctrl-a q


def strip_escape(data: bytes, pending: bytes) -> tuple[bytes, bool, bytes]:
    """(bytes to forward, escape seen, Ctrl-a held back for the next chunk)."""
    data = pending + data
    at = data.find(ESCAPE)
    if at >= 0:
        return data[:at], True, b""
    if data.endswith(ESCAPE[:1]):
        return data[:-1], False, ESCAPE[:1]
    return data, False, b""


class _Flags:
    """Make a shared descriptor non-blocking for the relay, and restore it."""

    def __init__(self, fd: int):
        self.fd = fd
        self.old = fcntl.fcntl(fd, fcntl.F_GETFL)

    def __enter__(self) -> int:
        fcntl.fcntl(self.fd, fcntl.F_SETFL, self.old | os.O_NONBLOCK)
        return self.fd

    def __exit__(self, *exc) -> None:
        fcntl.fcntl(self.fd, fcntl.F_SETFL, self.old)


async def _write_all(fd: int, data: bytes) -> None:
    loop = asyncio.get_running_loop()
    while data:
        try:
            n = os.write(fd, data)
            data = data[n:]
        except BlockingIOError:
            fut = loop.create_future()
            loop.add_writer(fd, lambda: fut.done() or fut.set_result(None))
            try:
                await fut
            finally:
                loop.remove_writer(fd)


async def relay(socket_path: Path, in_fd: int, out_fd: int, lifeline: int) -> str:
    """Copy until the caller leaves; returns why the relay ended."""
    reader, writer = await asyncio.open_unix_connection(str(socket_path))
    loop = asyncio.get_running_loop()
    done: asyncio.Future[str] = loop.create_future()
    pending = b""

    def finish(why: str) -> None:
        if not done.done():
            done.set_result(why)

    def on_input() -> None:
        nonlocal pending
        try:
            data = os.read(in_fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            finish("input closed")
            return
        data, escaped, pending = strip_escape(data, pending)
        if data:
            writer.write(data)
        if escaped:
            finish("escape")

    async def pump_output() -> None:
        while True:
            data = await reader.read(4096)
            if not data:
                finish("console closed")
                return
            await _write_all(out_fd, data)

    with _Flags(in_fd), _Flags(out_fd):
        loop.add_reader(in_fd, on_input)
        loop.add_reader(lifeline, lambda: finish("caller gone"))
        out_task = asyncio.create_task(pump_output())
        out_task.add_done_callback(lambda _t: finish("output closed"))
        try:
            why = await done
            await writer.drain()
            return why
        finally:
            loop.remove_reader(in_fd)
            loop.remove_reader(lifeline)
            out_task.cancel()
            writer.close()
