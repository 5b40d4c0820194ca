"""A busybox container through its whole life, seen from outside."""

from __future__ import annotations

import os
from pathlib import Path
from tests.helpers.wait import wait_for



def proc_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


def test_busybox_create_start_exec_stop_delete(node):
    user = node.osctl_json("user", "new", "alice")
    root_uid = user["root_uid"]
    assert root_uid == node.id_base

    node.osctl("ct", "new", "c1", "--user", "alice", "--template", "busybox")
    ct = node.osctl_json("ct", "start", "c1")
    assert ct["state"] == "running"
    pid = ct["init_pid"]
    # The container's init runs on the host as the user's first mapped UID.
    assert proc_uid(pid) == root_uid
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"init")

    # Exit codes, stdout and stderr pass through osctl ct exec.
    p = node.exec("c1", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (p.returncode, p.stdout, p.stderr) == (7, "out\n", "err\n")
    assert node.exec("c1", "id", "-u").stdout.strip() == "0"

    # A file made by the container's root is UID 0 on disk (stored unshifted)
    # and root's inside.
    assert node.exec("c1", "sh", "-c", "echo hi > /root/made-inside").returncode == 0
    rootfs = Path(node.osctl_json("ct", "show", "c1")["rootfs"])
    st = os.stat(rootfs / "root/made-inside")
    assert (st.st_uid, st.st_gid) == (0, 0)
    assert node.exec("c1", "stat", "-c", "%u", "/root/made-inside").stdout.strip() == "0"

    assert node.osctl_json("ct", "stop", "c1")["state"] == "stopped"
    assert not Path(f"/proc/{pid}").exists() or proc_uid(pid) != root_uid
    node.osctl("ct", "del", "c1")
    assert not rootfs.exists()
    assert node.osctl_json("ct", "ls") == []


def test_kill9_daemon_keeps_containers_and_readopts(node):
    node.osctl("user", "new", "bob")
    for ct in ("k1", "k2"):
        node.osctl("ct", "new", ct, "--user", "bob")
        node.osctl("ct", "start", ct)
    before = {c["id"]: c["init_pid"] for c in node.osctl_json("ct", "ls")}
    node.kill()  # SIGKILL, this node's daemon only
    for pid in before.values():
        assert Path(f"/proc/{pid}").exists(), "container died with the daemon"
    node.start()
    after = {c["id"]: (c["state"], c["init_pid"]) for c in node.osctl_json("ct", "ls")}
    assert after == {ct: ("running", pid) for ct, pid in before.items()}
    # And it still drives them.
    assert node.exec("k1", "true").returncode == 0
    assert node.osctl_json("ct", "stop", "k2")["state"] == "stopped"


def test_stop_behind_the_daemons_back_is_noticed(node):
    node.osctl("user", "new", "carol")
    node.osctl("ct", "new", "b1", "--user", "carol")
    node.osctl("ct", "start", "b1")
    node.lxc("lxc-stop", "default", "b1", "-k")
    wait_for(lambda: node.osctl_json("ct", "show", "b1")["state"], 10, 0.1, "b1 to be seen stopped",
             until=lambda state: state == "stopped")
