"""A node with a unified cgroup hierarchy (cgroup v2 only, as systemd mounts
it in the node VM; this host is hybrid): the container lifecycle, limits
and device grants, seen from inside the containers.

On v2 the limits are cpu.max, memory.max, memory.swap.max and pids.max, and
device grants are a BPF program LXC attaches to the container's cgroup
(there is no devices.allow file)."""

from __future__ import annotations

MIB = 1 << 20


def sh(vm, ct: str, script: str):
    return vm.osctl("ct", "exec", ct, "--", "sh", "-c", script, check=False)


def meminfo_total(vm, ct: str) -> int:
    line = next(ln for ln in sh(vm, ct, "cat /proc/meminfo").stdout.splitlines()
                if ln.startswith("MemTotal:"))
    return int(line.split()[1]) * 1024


def test_the_node_is_unified(node_vm):
    assert node_vm.run("stat -fc %T /sys/fs/cgroup", check=True).stdout.strip() == "cgroup2fs"
    assert node_vm.run("grep -c ' - cgroup ' /proc/self/mountinfo").stdout.strip() == "0"


def test_start_stop_and_limits_seen_inside(node_vm):
    vm = node_vm
    vm.osctl("user", "new", "lim")
    vm.osctl("ct", "new", "l1", "--user", "lim", "--memory", "64M", "--swap", "0",
             "--cpu-limit", "1", "--pids", "16")
    vm.osctl("ct", "start", "l1")
    assert vm.osctl("ct", "show", "l1", json=True)["state"] == "running"
    # Inside, /sys/fs/cgroup is the container's own cgroup2 (its namespace).
    assert sh(vm, "l1", "test -f /sys/fs/cgroup/cgroup.controllers").returncode == 0

    # Memory: lxcfs shows the limit, and the kernel enforces it (no swap).
    assert meminfo_total(vm, "l1") == 64 * MIB
    p = sh(vm, "l1", "dd if=/dev/zero of=/dev/null bs=100M count=1")
    assert p.returncode != 0, p.stdout + p.stderr
    assert sh(vm, "l1", "true").returncode == 0  # the container lives on
    vm.osctl("ct", "set", "memory", "l1", "128M")  # live
    assert meminfo_total(vm, "l1") == 128 * MIB
    assert sh(vm, "l1", "dd if=/dev/zero of=/dev/null bs=100M count=1").returncode == 0

    # CPU: one CPU's worth of quota, seen as one CPU (lxcfs) of the VM's two,
    # and the quota is repeated where the container can read it.
    assert sh(vm, "l1", "grep -c ^processor /proc/cpuinfo").stdout.strip() == "1"
    assert sh(vm, "l1", "cat /sys/fs/cgroup/cpu.max").stdout.strip() == "100000 100000"
    vm.osctl("ct", "set", "cpu-limit", "l1", "none")
    assert sh(vm, "l1", "grep -c ^processor /proc/cpuinfo").stdout.strip() == "2"

    # pids: a fork past the limit fails inside (echo and wait are builtins).
    p = sh(vm, "l1", "for i in $(seq 24); do sleep 3 && echo $i & done; wait")
    assert "can't fork" in p.stderr, p.stderr
    assert len(p.stdout.split()) < 16

    vm.osctl("ct", "stop", "l1")
    assert vm.osctl("ct", "show", "l1", json=True)["state"] == "stopped"
    vm.osctl("ct", "start", "l1")  # and again, from the cgroups the stop left
    assert sh(vm, "l1", "true").returncode == 0
    vm.osctl("ct", "del", "l1", "--force")


TUN = "tunctl -t osctltap0 >/dev/null && ip link show osctltap0 >/dev/null"


def test_tun_grant_on_and_off_through_the_bpf_device_controller(node_vm):
    vm = node_vm
    vm.run("modprobe tun", check=True)
    vm.osctl("user", "new", "dev")
    vm.osctl("ct", "new", "d1", "--user", "dev")
    vm.osctl("ct", "start", "d1")
    p = sh(vm, "d1", TUN)  # no grant: no node, and the BPF program would refuse one
    assert p.returncode != 0, p.stdout
    vm.osctl("ct", "feature", "enable", "d1", "tun", "--restart")
    p = sh(vm, "d1", TUN)
    assert p.returncode == 0, p.stderr
    vm.osctl("ct", "feature", "disable", "d1", "tun", "--restart")
    p = sh(vm, "d1", TUN)
    assert p.returncode != 0, p.stdout
    vm.osctl("ct", "del", "d1", "--force")
