"""How a container's init ended: the exit codes LXC's monitors publish.

LXC passes no exit status to its hooks. Each container's monitor, though,
writes the init's wait status (and its state changes) to
``/run/lxc/<lxcpath>/monitor-fifo`` when a reader holds it open: the FIFO
that ``lxc-monitord`` serves to ``lxc-monitor``. The daemon is that reader
for its own lxcpaths (it takes the FIFO's lock, as lxc-monitord does, so
that a stray lxc-monitord does not split the messages). The exit code is
written before the post-stop hook runs, so the hook's handler finds it.

Without a reader (the daemon is down) LXC's open fails with ENXIO and it
sends nothing: a stop while the daemon is down has no exit status.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import signal
import struct
from pathlib import Path

log = logging.getLogger(__name__)

# struct lxc_msg { lxc_msg_type_t type; char name[NAME_MAX + 1]; int value; }
MSG = struct.Struct("=i256si")
MSG_STATE, MSG_PRIORITY, MSG_EXIT_CODE = 0, 1, 2
F_SETPIPE_SZ = 1031
# Room for thousands of messages should the event loop fall behind: a full
# FIFO would block the monitors that write to it.
PIPE_SIZE = 1 << 20


def describe(status: int) -> dict:
    """A wait status as ``{"exit_status": n}`` or ``{"signal": "SIGKILL"}``."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            return {"signal": signal.Signals(sig).name}
        except ValueError:
            return {"signal": str(sig)}
    if os.WIFEXITED(status):
        return {"exit_status": os.WEXITSTATUS(status)}
    return {"wait_status": status}


class ExitCodes:
    def __init__(self, rundir: Path = Path("/run")):
        self.top = rundir / "lxc"  # LXC's run directory for root
        self.fds: dict[str, int] = {}  # lxcpath -> its FIFO, open for reading
        self.codes: dict[tuple[str, str], int] = {}  # (lxcpath, name) -> wait status
        self._rest: dict[str, bytes] = {}

    def fifo(self, lxcpath: str) -> Path:
        return self.top / lxcpath.lstrip("/") / "monitor-fifo"

    def watch(self, lxcpath: str) -> None:
        """Read the monitor FIFO of ``lxcpath`` from now on (idempotent)."""
        if lxcpath in self.fds:
            return
        path = self.fifo(lxcpath)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkfifo(path, 0o600)
        except FileExistsError:
            pass
        # O_RDWR: the FIFO stays open with no writer, and never reads EOF.
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            log.warning("%s is read by another process (lxc-monitord?): no exit codes of %s: %s",
                        path, lxcpath, e)
            return
        try:
            fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass
        self.fds[lxcpath] = fd
        try:
            asyncio.get_running_loop().add_reader(fd, self.drain, lxcpath)
        except RuntimeError:
            pass  # no loop (tests): take() drains

    def drain(self, lxcpath: str) -> None:
        fd = self.fds.get(lxcpath)
        if fd is None:
            return
        data = self._rest.pop(lxcpath, b"")
        while True:
            try:
                chunk = os.read(fd, MSG.size * 256)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                raise
            if not chunk:
                break
            data += chunk
        whole = len(data) - len(data) % MSG.size
        for kind, name, value in MSG.iter_unpack(data[:whole]):
            if kind == MSG_EXIT_CODE:
                self.codes[(lxcpath, name.split(b"\0", 1)[0].decode(errors="replace"))] = value
        if whole < len(data):
            self._rest[lxcpath] = data[whole:]

    def take(self, lxcpath: str, name: str) -> int | None:
        """The wait status of the init of ``name`` that ended last, once."""
        self.drain(lxcpath)
        return self.codes.pop((lxcpath, name), None)

    def close(self) -> None:
        """Stop reading and remove the FIFOs (and the directories made for them)."""
        for lxcpath, fd in self.fds.items():
            try:
                asyncio.get_running_loop().remove_reader(fd)
            except RuntimeError:
                pass
            os.close(fd)
            path = self.fifo(lxcpath)
            path.unlink(missing_ok=True)
            for d in path.parents:
                if d == self.top or self.top not in d.parents:
                    break
                try:
                    d.rmdir()
                except OSError:
                    break
        self.fds.clear()
