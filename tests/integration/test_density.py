"""A full node: kernel limits raised at start, a container that dies after its
start says why, and failed starts that leave nothing in the way of the next."""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from pathlib import Path

from osctl.client import Client
from osctld import sysctls
from osctld.runtime.cgroup import layout as cgroups
from tests.conftest import missing_capability, require


def host_sysctl(key: str) -> int:
    return sysctls.read(key)


def test_sysctls_are_raised_never_lowered_and_shown():
    require(missing_capability())
    from tests.helpers.node import TestNode

    pty_before = host_sysctl("kernel.pty.max")
    host_qlen = host_sysctl("net.unix.max_dgram_qlen")
    node = TestNode(config={"sysctls": {
        "kernel.pty.max": 1024,  # below what the node has: stays
        "net.unix.max_dgram_qlen": host_qlen + 1000,  # per network namespace
        "vm.max_map_count": None,  # dropped from the defaults
    }})
    try:
        node.start()
        status = node.osctl_json("status")["sysctls"]
        assert status["kernel.pty.max"] == {"wanted": 1024, "in_force": pty_before,
                                            "note": "kept: the node had more"}
        assert host_sysctl("kernel.pty.max") == pty_before
        want = sysctls.DEFAULTS["fs.inotify.max_user_instances"]
        assert host_sysctl("fs.inotify.max_user_instances") >= want
        assert status["fs.inotify.max_user_instances"]["in_force"] >= want
        # net.* keys are the node's own: its namespace has them, the host does not.
        assert status["net.unix.max_dgram_qlen"] == {"wanted": host_qlen + 1000,
                                                     "in_force": host_qlen + 1000}
        inside = node.nsexec("cat", "/proc/sys/net/unix/max_dgram_qlen").stdout
        assert int(inside) == host_qlen + 1000
        assert host_sysctl("net.unix.max_dgram_qlen") == host_qlen
        # Keys only the host's first namespace has are reported as absent here.
        assert status["net.core.bpf_jit_limit"]["note"] == "absent in this namespace"
        assert "vm.max_map_count" not in status
    finally:
        node.cleanup()


class Events:
    """State events of a node, collected by a thread from one subscription."""

    def __init__(self, node):
        self.node = node
        self.seen: list[dict] = []
        self.client = Client(str(node.socket), timeout=120).connect()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        nudge = itertools.count()
        deadline = time.time() + 20
        while not any(e["type"] == "add" for e in self.seen):  # subscribed
            assert time.time() < deadline, "no events"
            node.call("user.new", name=f"nudge{next(nudge)}")
            time.sleep(0.1)

    def _run(self) -> None:
        try:
            for ev in self.client.events():
                self.seen.append(ev)
        except Exception:  # closed under it: the test is done with it
            pass

    def wait(self, pred, timeout: float = 30) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for ev in list(self.seen):
                if pred(ev):
                    return ev
            time.sleep(0.1)
        raise AssertionError(f"no such event in {self.seen}")

    def close(self) -> None:
        self.client.close()


def stopped(ct: str):
    return lambda ev: ev["type"] == "state" and ev.get("id") == ct and ev["state"] == "stopped"


def test_a_container_that_dies_after_its_start_says_why(node):
    node.osctl("user", "new", "u1")
    node.osctl("ct", "new", "c1", "--user", "u1")
    rootfs = Path(node.osctl_json("ct", "show", "c1")["rootfs"])
    init = rootfs / "sbin/init"
    init.unlink()  # busybox's link: an init that gives up after a moment
    init.write_text("#!/bin/sh\nsleep 5\nexit 3\n")
    init.chmod(0o755)
    events = Events(node)
    try:
        assert node.osctl_json("ct", "start", "c1")["state"] == "running"
        ev = events.wait(stopped("c1"))
        assert ev["last_stop"]["reason"] == "init exited"
        assert ev["last_stop"]["exit_status"] == 3
        shown = node.osctl_json("ct", "show", "c1")
        assert shown["state"] == "stopped"
        assert shown["last_stop"]["exit_status"] == 3

        # Killed from outside: the signal is named, and survives a daemon restart.
        init.unlink()
        init.symlink_to("/bin/busybox")
        events.seen.clear()
        pid = node.osctl_json("ct", "start", "c1")["init_pid"]
        os.kill(pid, signal.SIGKILL)
        ev = events.wait(stopped("c1"))
        assert ev["last_stop"]["signal"] == "SIGKILL"
        events.close()
        node.restart()
        assert node.osctl_json("ct", "show", "c1")["last_stop"]["signal"] == "SIGKILL"

        # A stop by osctld says so.
        node.osctl("ct", "start", "c1")
        node.osctl("ct", "stop", "c1", "--timeout", "10")
        assert node.osctl_json("ct", "show", "c1")["last_stop"]["reason"] == "stopped by osctld"
    finally:
        events.close()


def monitor_dirs(node, ct: str, pool: str = "default") -> list[Path]:
    layout = cgroups.detect()  # the daemon was started from here: same cgroups
    return [h.dir(f"{node.config['cgroup_root']}/monitor/{ct}@{pool}") for h in layout.hierarchies]


def test_a_stale_monitor_cgroup_does_not_block_starts(node):
    """Defect 3: LXC leaves its monitor's cgroup after a failed start, and
    with the fixed name it cannot make another: every later start failed."""
    node.osctl("user", "new", "u1")
    node.osctl("ct", "new", "c1", "--user", "u1")
    # A failed start, five times: LXC cannot mount the container's /dev.
    dev = Path(node.osctl_json("ct", "show", "c1")["rootfs"]) / "dev"
    dev.rename(dev.with_name("dev.away"))
    dev.write_text("")
    for _ in range(5):
        p = node.osctl("ct", "start", "c1", check=False)
        assert p.returncode != 0
    dev.unlink()
    dev.with_name("dev.away").rename(dev)
    # And as LXC leaves it, in every hierarchy, from a start that died.
    for d in monitor_dirs(node, "c1"):
        d.mkdir(parents=True, exist_ok=True)
    assert node.osctl_json("ct", "start", "c1")["state"] == "running"
    node.osctl("ct", "stop", "c1", "--timeout", "10")
    assert not any(d.exists() for d in monitor_dirs(node, "c1"))

    # A daemon restart clears them too (a start that failed while it was down).
    node.kill(signal.SIGKILL)
    for d in monitor_dirs(node, "c1"):
        d.mkdir(parents=True, exist_ok=True)
    node.start()
    assert not any(d.exists() for d in monitor_dirs(node, "c1"))
    assert node.osctl_json("ct", "start", "c1")["state"] == "running"

