"""lxcfs /proc views inside containers, and lxcfs outliving osctld."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from tests.helpers.wait import wait_for


LIMIT = 256 * 1024 * 1024


def meminfo_kb(text: str, key: str) -> int:
    return next(int(ln.split()[1]) for ln in text.splitlines() if ln.startswith(key + ":"))


def test_proc_views_show_the_container_and_survive_daemon_restart(node):
    node.osctl("user", "new", "erin")
    node.osctl("ct", "new", "v1", "--user", "erin")
    node.osctl("ct", "start", "v1")
    node.osctl("ct", "set", "memory", "v1", "256M")  # live, on the running container
    meminfo = node.exec("v1", "cat", "/proc/meminfo").stdout
    assert meminfo_kb(meminfo, "MemTotal") == LIMIT // 1024
    # (busybox's free asks sysinfo(2), which lxcfs cannot change; procps's
    # free, as in the debian template, reads /proc/meminfo.)
    # Its uptime is its own (seconds), not the node's.
    ct_up = float(node.exec("v1", "cat", "/proc/uptime").stdout.split()[0])
    assert ct_up < float(Path("/proc/uptime").read_text().split()[0])
    assert ct_up < 120

    # Load the node (not the container) with two busy loops of our own.
    loops = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(2)]
    try:
        time.sleep(11)  # lxcfs and the kernel both sample load every 5 s
        node_load = float(Path("/proc/loadavg").read_text().split()[0])
        ct_load = float(node.exec("v1", "cat", "/proc/loadavg").stdout.split()[0])
    finally:
        for p in loops:
            p.kill()
            p.wait()
    assert node_load > 0.2 and ct_load < 0.1 and ct_load < node_load, (node_load, ct_load)

    # osctld dies hard; lxcfs does not, and the container's views keep working.
    lxcfs_pid = node.osctl_json("status")["lxcfs"]["pid"]
    assert lxcfs_pid == node.lxcfs_pid()
    node.kill()
    assert Path(f"/proc/{lxcfs_pid}").exists()
    assert meminfo_kb(node.exec_raw("v1", "cat", "/proc/meminfo"), "MemTotal") == LIMIT // 1024
    node.start()
    status = node.osctl_json("status")["lxcfs"]
    assert status["active"] and status["pid"] == lxcfs_pid
    assert meminfo_kb(node.exec("v1", "cat", "/proc/meminfo").stdout, "MemTotal") == LIMIT // 1024
    # A container started by the new daemon gets the views too.
    node.osctl("ct", "new", "v2", "--user", "erin")
    node.osctl("ct", "start", "v2")
    assert "lxcfs /proc/meminfo" in node.exec("v2", "cat", "/proc/mounts").stdout
    os.kill(lxcfs_pid, 0)  # still the same one


def test_a_dead_lxcfs_is_replaced_at_daemon_start(node):
    old = node.lxcfs_pid()
    node.kill()
    os.kill(old, 9)  # our node's lxcfs, by its PID
    wait_for(lambda: Path(f"/proc/{old}").exists(), 10, 0.05, f"lxcfs {old} to be gone",
             until=lambda exists: not exists)
    node.start()
    status = node.osctl_json("status")["lxcfs"]
    assert status["active"] and status["pid"] not in (None, old)
    assert (node.run_dir / "lxcfs/proc/uptime").read_text()


def test_cpu_limit_shows_as_the_number_of_cpus_inside(node):
    host_cpus = os.cpu_count()
    assert host_cpus >= 2, "needs a node with two CPUs or more to tell a limit from none"
    node.osctl("user", "new", "fay")
    node.osctl("ct", "new", "cv", "--user", "fay")
    node.osctl("ct", "set", "cpu-limit", "cv", "1")
    node.osctl("ct", "start", "cv")

    def cpus() -> int:
        return int(node.exec("cv", "sh", "-c", "grep -c ^processor /proc/cpuinfo").stdout)

    assert cpus() == 1
    assert node.exec("cv", "cat", "/sys/devices/system/cpu/online").stdout.strip() == "0"
    node.osctl("ct", "set", "cpu-limit", "cv", "none")  # live
    assert cpus() == host_cpus
