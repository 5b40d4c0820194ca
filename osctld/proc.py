"""Running node tools (lxc-*, cp, tar, btrfs) from the event loop; ending the
helpers osctld leaves running beside it (lxcfs, the statfs proxy)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path


async def run_tool(*argv: str, stdin: bytes | None = None) -> tuple[int, str]:
    """(exit code, stdout and stderr as text), the tool ended as ``finish`` ends it."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await finish(proc, stdin)
    return proc.returncode or 0, out.decode(errors="replace")


async def finish(proc: asyncio.subprocess.Process, stdin: bytes | None = None) -> tuple[bytes, bytes]:
    """``proc.communicate(stdin)``. Cancelled (or failing), it kills the tool
    and waits for it first, so that a rollback never races a tool still at
    work on what it is about to remove."""
    try:
        return await proc.communicate(stdin)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await asyncio.shield(proc.wait())
        raise


async def spawn(*argv: str, **kw) -> asyncio.subprocess.Process:
    """Start a tool that runs something for a caller (lxc-attach, lxc-console)
    in a process group of its own, which ``end`` kills whole."""
    return await asyncio.create_subprocess_exec(*argv, process_group=0, **kw)


async def end(proc: asyncio.subprocess.Process) -> None:
    """Kill ``proc``'s process group and reap ``proc``. Killing lxc-attach
    alone would leave what it started in the container running on, reparented;
    that process is in the group (no terminal: LXC makes it no session)."""
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # gone on its own meanwhile
            pass
    await asyncio.shield(proc.wait())


def stop_helper(pid: int, program: str, term: bool, timeout: float) -> None:
    """End a helper osctld started (lxcfs, the statfs proxy), which is no
    child of it: SIGTERM first if ``term``, SIGKILL once ``timeout`` has
    passed; returns when it has gone. ``program`` is in its command line,
    so a PID used again since is left alone."""
    deadline = time.monotonic() + timeout
    sig = signal.SIGTERM if term else None
    while _runs(pid, program):
        if time.monotonic() > deadline:
            sig = signal.SIGKILL
        if sig is not None:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            sig = None
        time.sleep(0.05)


def _runs(pid: int, program: str) -> bool:
    try:  # a zombie's command line is empty
        return program.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
