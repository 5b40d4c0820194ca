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
