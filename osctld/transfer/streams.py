"""Root filesystems between nodes: btrfs or zfs send/receive, or rsync.

Between two btrfs pools a pass is ``btrfs send [-p PARENT] SNAPSHOT`` of a
read-only snapshot of the running rootfs, fed to the SSH channel
(``channel.call``) and read on the destination by ``btrfs receive`` straight
from the session's stdin. Between two zfs pools it is the same with
libzfs_core: ``lzc_send`` of a snapshot of the container's datasets
(storage/zfs.py) written to the channel, ``lzc_receive`` reading the
session's stdin. Anything else goes by rsync (``-aHAXSx
--numeric-ids --delete``): its client runs ``ssh`` as its remote shell, so
its server end is the destination's receive verb ``ct.receive.rsync``,
which runs ``rsync --server`` on the session's stdin and stdout, with the
options its client sent checked against the ones osctld sends. Either way
the stream goes through the one SSH trust, and no rsync daemon or open port
is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable

from osctl.protocol import INTERNAL, INVALID, OsctlError

from ..proc import finish
from . import channel

if TYPE_CHECKING:
    from ..node import Node

RSYNC_OPTS = ["-aHAXSx", "--numeric-ids", "--delete"]
# What rsync's client passes its server end for RSYNC_OPTS: the short ones
# in one word (with its capabilities after "e."), and these long ones.
_SERVER_SHORT = re.compile(r"^-[lHogDtpAXrxS]+(e\.[A-Za-z]*)?$")
_SERVER_LONG = frozenset({"--delete", "--numeric-ids"})
# rsync's exit statuses a live pass takes: 24, files vanished meanwhile.
LIVE_OK = (0, 24)
Progress = Callable[[int], None]


def rsync_server_argv(argv: list[str], target: Path) -> list[str]:
    """The server end's command line for the one rsync's client asked for
    (``rsync --server OPTIONS . TOKEN``), on ``target``; ``invalid`` for
    anything but what osctld's client sends (no --sender, no paths)."""
    if len(argv) < 5 or argv[:2] != ["rsync", "--server"] or argv[-2] != "." \
            or not all(_SERVER_SHORT.match(a) or a in _SERVER_LONG for a in argv[2:-2]):
        raise OsctlError(INVALID, f"refused rsync command {shlex.join(argv)[:200]!r}")
    return ["rsync", *argv[1:-1], f"{target}/"]


class Meter:
    """Bytes so far and their rate, told to ``report`` at most twice a second.
    ``size``: what the whole stream weighs, where the sender knows it (zfs)."""

    def __init__(self, report: Callable[[dict], None], step: str):
        self.report = report
        self.step = step
        self.start = time.monotonic()
        self.last = 0.0
        self.done = 0
        self.size: int | None = None

    @property
    def sent(self) -> int:
        """The stream's size, else the bytes seen last (ssh's reads, sampled)."""
        return self.size if self.size is not None else self.done

    def __call__(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now - self.last < 0.5:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-3)
        self.report({"step": self.step, "bytes": done, "rate": int(rate),
                     "message": f"{done / 2**20:.1f} MiB, {rate / 2**20:.1f} MiB/s"})


Writer = Callable[[int], Awaitable[None]]


async def send_stream(node: Node, dest: str, verb: str, args: dict, write: Writer,
                      progress: Progress) -> dict:
    """Call receive verb ``verb`` with the stream ``write(fd)`` writes (and
    returns when it has written it all) as its stdin. The pipe's write end
    is closed only once ``write`` is done (a thread writing to it must not
    find the number reused); a destination that fails or hangs up closes
    the read end, and the writer's next write fails (EPIPE)."""
    r, w = os.pipe()
    writing = asyncio.ensure_future(_write_all(write, w))
    try:
        reply = await channel.call(node, dest, verb, args, stdin=r, progress=progress)
    except BaseException:
        os.close(r)
        with contextlib.suppress(Exception):
            await asyncio.shield(writing)
        raise
    os.close(r)
    await writing
    return reply


async def _write_all(write: Writer, w: int) -> None:
    try:
        await write(w)
    finally:
        os.close(w)


def btrfs_writer(snapshot: Path, parent: Path | None) -> Writer:
    """``btrfs send [-p PARENT] SNAPSHOT``."""
    async def write(fd: int) -> None:
        proc = await asyncio.create_subprocess_exec(
            "btrfs", "send", "-q", *(["-p", str(parent)] if parent else []), str(snapshot),
            stdin=asyncio.subprocess.DEVNULL, stdout=fd, stderr=asyncio.subprocess.PIPE)
        _, err = await finish(proc)
        if proc.returncode != 0:
            raise OsctlError(INTERNAL, f"btrfs send {snapshot.name}: "
                                       f"{err.decode(errors='replace').strip()}")
    return write


async def _on(argv: list[str], stdin: int, stdout: int) -> tuple[int, str]:
    """Run a tool on the SSH session's descriptors: (exit status, its stderr).
    Cancelled (the sender went), it is killed and reaped first."""
    proc = await asyncio.create_subprocess_exec(*argv, stdin=stdin, stdout=stdout,
                                                stderr=asyncio.subprocess.PIPE)
    _, err = await finish(proc)
    return proc.returncode or 0, err.decode(errors="replace").strip()[-500:]


async def btrfs_receive(fd: int, into: Path) -> None:
    """Receive a btrfs stream from ``fd`` into directory ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    rc, err = await _on(["btrfs", "receive", str(into)], fd, asyncio.subprocess.DEVNULL)
    if rc != 0:
        raise OsctlError(INTERNAL, f"btrfs receive: {err}")


async def rsync_send(node: Node, dest: str, token: str, src: Path, progress: Progress,
                     live: bool) -> None:
    """One rsync pass of ``src`` to the transfer ``token`` names at ``dest``
    (``live``: the container runs, files vanishing meanwhile are no error)."""
    host, port = channel.split_dest(dest)
    target = f"[{host}]:{token}" if ":" in host else f"{host}:{token}"
    proc = await asyncio.create_subprocess_exec(
        "rsync", *RSYNC_OPTS, "--info=progress2", "--rsh", shlex.join(channel.ssh_base(node, port)),
        f"{src}/", target, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        errors = asyncio.ensure_future(proc.stderr.read())
        buf = b""
        while chunk := await proc.stdout.read(4096):
            *lines, buf = re.split(rb"[\r\n]", buf + chunk)
            for line in lines:
                first = line.split()[:1]
                if first and first[0].replace(b",", b"").isdigit():
                    progress(int(first[0].replace(b",", b"")))
        err = await errors
        await proc.wait()
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await asyncio.shield(proc.wait())
        raise
    # The destination's reply is a JSON line on rsync's stderr (where the
    # forced command wrote it): its error, if it made one, is raised here.
    if any(line.startswith(b"{") for line in err.splitlines()):
        channel.parse_reply(dest, proc.returncode or 0, err, err)
    if proc.returncode not in (LIVE_OK if live else (0,)):
        raise OsctlError(INTERNAL, f"rsync to {dest} exited {proc.returncode}: "
                                   f"{err.decode(errors='replace').strip()[-500:]}")


async def rsync_receive(argv: list[str], target: Path, stdin: int | None, stdout: int | None) -> None:
    """rsync's server end on the SSH session's descriptors, into ``target``."""
    if stdin is None or stdout is None:
        raise OsctlError(INVALID, "rsync needs the session's stdin and stdout")
    rc, err = await _on(rsync_server_argv(argv, target), stdin, stdout)
    if rc not in LIVE_OK:
        raise OsctlError(INTERNAL, f"rsync (receiving) exited {rc}: {err}")
