"""A Debian container boots as Debian does: systemd as PID 1, unprivileged."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.helpers.wait import wait_for


pytestmark = [pytest.mark.debian, pytest.mark.usefixtures("debian_template")]

BOOT_TIMEOUT = 120


def status_of(path: str) -> dict[str, str]:
    out = {}
    for line in Path(path).read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.split()
    return out


def wait_running(node, ct: str) -> str:
    """Poll `systemctl is-system-running` until it has settled (or time runs out)."""
    return wait_for(lambda: node.exec(ct, "systemctl", "is-system-running").stdout.strip(), BOOT_TIMEOUT, 1,
                    lambda: f"systemd in {ct} to settle; failed units:\n"
                            + node.exec(ct, "systemctl", "--failed", "--no-pager").stdout,
                    until=lambda state: state in ("running", "degraded"))


def test_debian_create_boot_exec_stop_delete(node):
    root_uid = node.osctl_json("user", "new", "deb")["root_uid"]
    node.osctl("ct", "new", "d1", "--user", "deb", "--template", "debian", "--version", "bookworm")
    ct = node.osctl_json("ct", "start", "d1", "--wait", "--timeout", str(BOOT_TIMEOUT))
    assert ct["state"] == "running"
    # --wait returned once systemd was done starting, not before.
    assert node.exec("d1", "systemctl", "is-system-running").stdout.strip() not in (
        "initializing", "starting")
    pid = ct["init_pid"]

    # PID 1 inside is systemd, running on the host as the user's first mapped UID.
    st = status_of(f"/proc/{pid}/status")
    assert int(st["Uid"][0]) == root_uid and int(st["Gid"][0]) == root_uid
    assert Path(f"/proc/{pid}/exe").resolve().name == "systemd"
    assert node.exec("d1", "cat", "/proc/1/comm").stdout.strip() == "systemd"

    state = wait_running(node, "d1")
    assert state in ("running", "degraded")
    p = node.exec("d1", "sh", "-c", "grep ^ID= /etc/os-release; hostname; id -u; exit 3")
    assert (p.returncode, p.stdout.split()) == (3, ["ID=debian", "d1", "0"])

    stopped = node.osctl_json("ct", "stop", "d1", "--timeout", "60")
    assert stopped["state"] == "stopped"
    assert not Path(f"/proc/{pid}").exists() or status_of(f"/proc/{pid}/status")["Uid"][0] != str(root_uid)
    rootfs = Path(node.osctl_json("ct", "show", "d1")["rootfs"])
    node.osctl("ct", "del", "d1")
    assert not rootfs.exists()
    assert node.osctl_json("ct", "ls") == []
