"""System calls made from inside a container: syscalls.c, built static with
the node's gcc (the busybox container has no libc) and copied into a rootfs.
Its output is one "<name> <errno>" line per call, 0 for success."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require

SOURCE = Path(__file__).resolve().parent / "syscalls.c"
ENOSYS = 38


@pytest.fixture(scope="session")
def syscalls_program(tmp_path_factory) -> Path:
    """The built program (import this fixture into a test module to use it)."""
    require(None if shutil.which("gcc") else "no gcc to build the test program")
    out = tmp_path_factory.mktemp("syscalls") / "syscalls"
    p = subprocess.run(["gcc", "-static", "-O", "-o", str(out), str(SOURCE)],
                       capture_output=True, text=True)
    require(None if p.returncode == 0 else f"cannot build a static program: {p.stderr.strip()}")
    return out


def install(node, ct: str, program: Path) -> None:
    """Put the program at /syscalls in the container's rootfs."""
    dst = Path(node.osctl_json("ct", "show", ct)["rootfs"]) / "syscalls"
    shutil.copy(program, dst)
    dst.chmod(0o755)


def errnos(node, ct: str, *names: str) -> dict[str, int]:
    p = node.exec(ct, "/syscalls", *names)
    # The whole answer: one failure in CI (exit code != 0, nothing on
    # stderr) left nothing to go on.
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    return {name: int(err) for name, err in (line.split() for line in p.stdout.splitlines())}
