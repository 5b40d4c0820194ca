"""Running node tools (lxc-*, cp, tar, btrfs) from the event loop."""

from __future__ import annotations

import asyncio


async def run_tool(*argv: str, stdin: bytes | None = None) -> tuple[int, str]:
    """(exit code, stdout and stderr as text). Cancelled, it kills the tool
    and waits for it first, so that a rollback never races a tool still at
    work on what it is about to remove."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await proc.communicate(stdin)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await asyncio.shield(proc.wait())
        raise
    return proc.returncode, out.decode(errors="replace")
