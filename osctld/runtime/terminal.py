"""A caller's terminal, passed as a descriptor, and a process the daemon runs.

lxc-attach gives the attached process a terminal whenever one of its
standard descriptors is a terminal, and copies that terminal to and from
the one it finds as /dev/tty: its controlling terminal. The caller's
terminal, passed to the daemon as a descriptor, cannot be that: it belongs
to the caller's own session. So the daemon opens a pty of its own, makes it
the controlling terminal of the process (``setsid --ctty``), puts the
caller's terminal in raw mode (as ssh does) and copies bytes both ways
between the pty's master and the caller's descriptors, in a thread, so a
stalled terminal never blocks the daemon's loop. That is for a caller whose
stdin is a terminal; one whose output only is (``osctl ct exec ... < file``)
gets pipes, so that no terminal is made at all.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import select
import termios
import tty

from ..proc import end, spawn

COPY_SIZE = 65536
DRAIN_TIMEOUT = 5.0
HANGUP_TIMEOUT = 10.0
EOF = b"\x04"  # ^D: end of file on a terminal


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


async def run_on_pipes(argv: list[str], fds: list[int]) -> int:
    """Run ``argv`` with the caller's stdin and its output through pipes copied
    to the caller's stdout and stderr: it sees no terminal, so lxc-attach makes
    none (output to a terminal, input from a pipe or file)."""
    proc = await spawn(*argv, stdin=fds[0], stdout=asyncio.subprocess.PIPE,
                       stderr=asyncio.subprocess.PIPE)

    async def pump(stream: asyncio.StreamReader, fd: int) -> None:
        lost = False
        while data := await stream.read(COPY_SIZE):
            if lost:
                continue  # the caller is gone: drain, so the process is not blocked
            try:
                await asyncio.to_thread(_write_all, fd, data)
            except OSError:
                lost = True

    try:
        await asyncio.gather(pump(proc.stdout, fds[1]), pump(proc.stderr, fds[2]))
        return await proc.wait()
    except BaseException:  # cancelled: what runs inside may never end
        await end(proc)
        raise


def _copy(master: int, src: int, dst: int, stop: int) -> None:
    """Copy src -> master and master -> dst until the pty or the caller hangs up.

    The end of src (a hung-up terminal) is passed on as the terminal's
    end-of-file (^D), and the output is copied on until the process is done."""
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
                if data:
                    _write_all(master, data)
                else:
                    sources.remove(src)
                    _write_all(master, EOF)
        except OSError:  # EIO: the process side is gone; or the caller's is
            return


async def run_on_pty(argv: list[str], fds: list[int]) -> int:
    """Run ``argv`` on a new pty joined to the caller's ``fds`` (stdin, stdout,
    stderr), of which stdin is a terminal."""
    master, slave = os.openpty()
    # Raw from the start: bytes (^D, ^C) pass to lxc-attach's own terminal
    # inside as they are, even before lxc-attach has set this one up.
    tty.setraw(slave)
    stop_r, stop_w = os.pipe()
    saved = None
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, fcntl.ioctl(fds[0], termios.TIOCGWINSZ, b"\0" * 8))
        saved = termios.tcgetattr(fds[0])
        tty.setraw(fds[0])
        proc = await asyncio.create_subprocess_exec(
            "setsid", "--wait", "--ctty", *argv, stdin=slave, stdout=slave, stderr=slave)
        os.close(slave)
        slave = -1
        copier = asyncio.ensure_future(asyncio.to_thread(_copy, master, fds[0], fds[1], stop_r))
        waiter = asyncio.ensure_future(proc.wait())
        try:
            await asyncio.wait([copier, waiter], return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():
                # The caller is gone: hang up the terminal, as a closed ssh does.
                os.close(master)
                master = -1
                try:
                    await asyncio.wait_for(asyncio.shield(waiter), HANGUP_TIMEOUT)
                except asyncio.TimeoutError:
                    await end(proc)
            return await waiter
        except BaseException:
            await end(proc)  # setsid made it the leader of its own group
            raise
        finally:
            # The output the process left in the pty is drained (EIO ends the
            # copy); a caller that stopped reading is not waited for long.
            done, _ = await asyncio.wait([copier], timeout=DRAIN_TIMEOUT)
            if not done:
                os.write(stop_w, b"x")
                await copier
    finally:
        if saved is not None:
            try:
                termios.tcsetattr(fds[0], termios.TCSADRAIN, saved)
            except termios.error:
                pass  # the caller's terminal is gone
        for fd in (master, slave, stop_r, stop_w):
            if fd >= 0:
                os.close(fd)
