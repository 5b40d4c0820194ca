"""A pseudo-terminal between a caller's terminal and a process the daemon runs.

lxc-attach gives the attached process a terminal whenever one of its
standard descriptors is a terminal, and copies that terminal to and from
the one it finds as /dev/tty: its controlling terminal. The caller's
terminal, passed to the daemon as a descriptor, cannot be that: it belongs
to the caller's own session. So the daemon opens a pty of its own, makes it
the controlling terminal of the process (``setsid --ctty``), puts the
caller's terminal in raw mode (as ssh does) and copies bytes both ways
between the pty's master and the caller's descriptors, in a thread, so a
stalled terminal never blocks the daemon's loop.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import select
import termios
import tty

COPY_SIZE = 65536
DRAIN_TIMEOUT = 5.0


def any_tty(fds: list[int]) -> bool:
    return any(os.isatty(fd) for fd in fds)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _copy(master: int, src: int, dst: int, stop: int) -> None:
    """Copy src -> master and master -> dst until the pty or the caller hangs up."""
    sources = [master, src, stop]
    while True:
        ready, _, _ = select.select(sources, [], [])
        if stop in ready:
            return
        try:
            if master in ready:
                data = os.read(master, COPY_SIZE)
                if not data:
                    return
                _write_all(dst, data)
            if src in ready:
                data = os.read(src, COPY_SIZE)
                if not data:  # the caller's terminal hung up
                    return
                _write_all(master, data)
        except OSError:  # EIO: the process side is gone; or the caller's is
            return


async def run_on_pty(argv: list[str], fds: list[int]) -> int:
    """Run ``argv`` on a new pty joined to the caller's ``fds`` (stdin, stdout, stderr)."""
    master, slave = os.openpty()
    stop_r, stop_w = os.pipe()
    saved = None
    try:
        if os.isatty(fds[0]):
            fcntl.ioctl(slave, termios.TIOCSWINSZ, fcntl.ioctl(fds[0], termios.TIOCGWINSZ, b"\0" * 8))
            saved = termios.tcgetattr(fds[0])
            tty.setraw(fds[0])
        proc = await asyncio.create_subprocess_exec(
            "setsid", "--wait", "--ctty", *argv, stdin=slave, stdout=slave, stderr=slave)
        os.close(slave)
        slave = -1
        copier = asyncio.ensure_future(asyncio.to_thread(_copy, master, fds[0], fds[1], stop_r))
        try:
            code = await proc.wait()
        except BaseException:
            proc.kill()
            raise
        finally:
            # The output the process left in the pty is drained (EIO ends the
            # copy); a caller that stopped reading is not waited for long.
            done, _ = await asyncio.wait([copier], timeout=DRAIN_TIMEOUT)
            if not done:
                os.write(stop_w, b"x")
                await copier
        return code
    finally:
        if saved is not None:
            try:
                termios.tcsetattr(fds[0], termios.TCSADRAIN, saved)
            except termios.error:
                pass  # the caller's terminal is gone
        for fd in (master, slave, stop_r, stop_w):
            if fd >= 0:
                os.close(fd)
