"""Bind mounts of the node's paths in running containers: put in, taken
out (through ``bind_helper.py``, a process of its own) and read back.

The same way at a container's start (its start-host hook, before its init
runs) and while it runs: not as LXC mount entries, whose read-only mounts
the container's root can remount writable (LXC attaches them unlocked).
"""

from __future__ import annotations

import sys
from pathlib import Path

from osctl.protocol import CONFLICT, OsctlError

from ..model.container import Container
from ..model.mount import Mount
from ..proc import run_tool

HELPER = Path(__file__).resolve().parent / "bind_helper.py"
NOT_MOUNTED = 3  # bind_helper's exit code for a path that is no mount point


async def _helper(*args: str) -> tuple[int, str]:
    return await run_tool(sys.executable, "-I", "-S", str(HELPER), *args)


async def mount_live(ct_id: str, pid: int | None, m: Mount) -> None:
    """``m`` mounted now in the container whose init is ``pid``: at its
    start (its start-host hook) or while it runs; ``conflict`` saying why not."""
    rc, out = await _helper("mount", str(pid), m.src, m.dst, "1" if m.ro else "0",
                            "1" if m.idmapped else "0")
    if rc != 0:
        raise OsctlError(CONFLICT, f"mounting {m.src} on {m.dst} in {ct_id}: {out.strip()}")


async def umount_live(ct: Container, dst: str) -> bool:
    """``dst`` unmounted in running container ``ct``: True if it was
    mounted, False if it was no mount point; ``conflict`` if it failed."""
    rc, out = await _helper("umount", str(ct.init_pid), dst)
    if rc not in (0, NOT_MOUNTED):
        raise OsctlError(CONFLICT, f"unmounting {dst} in {ct.id}: {out.strip()}")
    return rc == 0


def mount_points(pid: int) -> set[str]:
    """Where process ``pid`` sees something mounted, as paths from its own
    root (a container's init: the container's paths); empty if it is gone."""
    try:
        lines = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
    except OSError:
        return set()
    # Field 5 is the mount point, with space, tab, newline and \ octal-escaped.
    return {ln.split()[4].encode().decode("unicode_escape") for ln in lines if len(ln.split()) > 4}
