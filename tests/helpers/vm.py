"""VM test helpers: a templates folder with the test VM, console watching."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from .node import ROOT
from .templates import TEST_TEMPLATES
from .wait import wait_for

SECTOR = 512


def templates_dir(where: Path) -> Path:
    """The tree's templates plus the test VM templates, as symlinks in ``where``."""
    where.mkdir(parents=True, exist_ok=True)
    for src in [*(ROOT / "templates").iterdir(), *TEST_TEMPLATES.iterdir()]:
        (where / src.name).symlink_to(src)
    return where


def vm_node_config(tmp: Path, **vm_policy) -> dict:
    return {"templates_dir": str(templates_dir(tmp / "templates")),
            "vm": {"accelerator": "tcg", **vm_policy}}


def wait_console(node, vm: str, pattern: str, timeout: float = 120, after: int = 0) -> re.Match:
    """Wait until the VM's console log (from byte ``after``) matches ``pattern``."""
    log = Path(node.osctl_json("vm", "show", vm)["console_log"])

    def text() -> str:
        return log.read_bytes()[after:].decode(errors="replace") if log.exists() else ""

    def shown() -> str:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no console log)"
        return f"{pattern!r} on the console of {vm}; it shows:\n{tail}"

    return wait_for(lambda: re.search(pattern, text()), timeout, message=shown)


def console_size(node, vm: str) -> int:
    log = Path(node.osctl_json("vm", "show", vm)["console_log"])
    return log.stat().st_size if log.exists() else 0


def have_qemu() -> str | None:
    return None if shutil.which("qemu-system-x86_64") else "qemu-system-x86_64 is not installed"


# --- a guest that writes a counter -----------------------------------------------------

# Typed on the tiny VM's console: slot i of its disk (512 bytes at 512 * i)
# gets i, synced, then the console says it. A migration is seamless when the
# counter goes on, on the disk and on the console, with no number missing.
COUNTER = (b"\ni=0; while [ $i -lt 1000000 ]; do i=$((i+1)); "
           b"printf '%08d' $i | dd of=/dev/vda bs=512 seek=$i conv=notrunc,fsync 2>/dev/null; "
           b"echo CNT-$i; usleep 20000; done\n")
COUNTED = re.compile(rb"CNT-(\d+)\r?\n")


def counted(*logs: bytes) -> list[int]:
    """The counter values the console logs show, the logs taken in order."""
    return [int(m) for m in COUNTED.findall(b"".join(logs))]


def disk_counter(disk: Path) -> list[int]:
    """The counter values in a disk's slots, from slot 1 up to the first empty one."""
    values = []
    with open(disk, "rb") as f:
        while True:
            f.seek(SECTOR * (len(values) + 1))
            raw = f.read(8)
            if not raw.strip(b"\0"):
                return values
            values.append(int(raw))


def type_on_console(path: Path, text: bytes) -> None:
    """Type ``text`` on a QEMU serial console socket (a chardev server), as a
    person would: QEMU takes what the UART's 16-byte FIFO holds and drops
    what is unread when the connection ends."""
    import socket
    import time

    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        for i in range(0, len(text), 8):
            s.sendall(text[i:i + 8])
            time.sleep(0.05)
        time.sleep(0.5)


def vm_cluster_with_tiny(cluster, user: str, address: str) -> None:
    """``user`` on every node of a started ``cluster``; VM v1 (the tiny VM,
    256 MiB) on the first node, with one netif holding ``address``."""
    for n in cluster.nodes:
        n.osctl("user", "new", user)
    a = cluster.nodes[0]
    a.osctl("vm", "new", "v1", "--user", user, "--template", "tinyvm",
            "-c", "1", "-m", "256M", "-d", "10G")
    a.osctl("vm", "netif", "new", "v1", "eth0")
    a.osctl("vm", "netif", "ip", "add", "v1", "eth0", address)
