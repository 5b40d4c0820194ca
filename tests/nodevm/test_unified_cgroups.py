"""A node with a unified cgroup hierarchy (cgroup v2 only, as systemd mounts
it in the node VM; this host is hybrid): the container lifecycle, limits
and device grants, seen from inside the containers.

On v2 the limits are cpu.max, memory.max, memory.swap.max and pids.max, and
device grants are a BPF program LXC attaches to the container's cgroup
(there is no devices.allow file)."""

from __future__ import annotations

MIB = 1 << 20


def meminfo_total(vm, ct: str) -> int:
    line = next(ln for ln in vm.exec(ct, "cat /proc/meminfo").stdout.splitlines()
                if ln.startswith("MemTotal:"))
    return int(line.split()[1]) * 1024


def test_the_node_is_unified(node_vm):
    fs, v1 = node_vm.run_all("stat -fc %T /sys/fs/cgroup", "grep -c ' - cgroup ' /proc/self/mountinfo")
    assert fs.stdout.strip() == "cgroup2fs"
    assert v1.stdout.strip() == "0"


def test_start_stop_and_limits_seen_inside(node_vm):
    vm = node_vm
    vm.call_all(("user.new", {"name": "lim"}),
                ("ct.new", {"id": "l1", "user": "lim",
                            "limits": {"memory": "64M", "swap": "0", "cpu_limit": "1", "pids": "16"}}),
                ("ct.start", {"id": "l1"}))
    assert vm.call("ct.show", {"id": "l1"})["state"] == "running"
    # Inside, /sys/fs/cgroup is the container's own cgroup2 (its namespace).
    assert vm.exec("l1", "test -f /sys/fs/cgroup/cgroup.controllers").returncode == 0

    # Memory: lxcfs shows the limit, and the kernel enforces it (no swap).
    assert meminfo_total(vm, "l1") == 64 * MIB
    p = vm.exec("l1", "dd if=/dev/zero of=/dev/null bs=100M count=1")
    assert p.returncode != 0, p.stdout + p.stderr
    assert vm.exec("l1", "true").returncode == 0  # the container lives on
    vm.call("ct.set", {"id": "l1", "limits": {"memory": "128M"}})  # live
    assert meminfo_total(vm, "l1") == 128 * MIB
    assert vm.exec("l1", "dd if=/dev/zero of=/dev/null bs=100M count=1").returncode == 0

    # CPU: one CPU's worth of quota, seen as one CPU (lxcfs) of the VM's two,
    # and the quota is repeated where the container can read it.
    assert vm.exec("l1", "grep -c ^processor /proc/cpuinfo").stdout.strip() == "1"
    assert vm.exec("l1", "cat /sys/fs/cgroup/cpu.max").stdout.strip() == "100000 100000"
    vm.call("ct.set", {"id": "l1", "limits": {"cpu_limit": "none"}})
    assert vm.exec("l1", "grep -c ^processor /proc/cpuinfo").stdout.strip() == "2"

    # pids: a fork past the limit fails inside (echo and wait are builtins).
    p = vm.exec("l1", "for i in $(seq 24); do sleep 3 && echo $i & done; wait")
    assert "can't fork" in p.stderr, p.stderr
    assert len(p.stdout.split()) < 16

    # The CLI's own path once: osctl ct stop and ct show as an operator types them.
    vm.osctl("ct", "stop", "l1")
    assert vm.osctl("ct", "show", "l1", json=True)["state"] == "stopped"
    vm.call("ct.start", {"id": "l1"})  # and again, from the cgroups the stop left
    assert vm.exec("l1", "true").returncode == 0
    vm.call("ct.del", {"id": "l1", "force": True})


TUN = "tunctl -t osctltap0 >/dev/null && ip link show osctltap0 >/dev/null"


def test_tun_grant_on_and_off_through_the_bpf_device_controller(node_vm):
    vm = node_vm
    vm.run("modprobe tun", check=True)
    vm.call_all(("user.new", {"name": "dev"}), ("ct.new", {"id": "d1", "user": "dev"}),
                ("ct.start", {"id": "d1"}))
    p = vm.exec("d1", TUN)  # no grant: no node, and the BPF program would refuse one
    assert p.returncode != 0, p.stdout
    vm.call("ct.feature.enable", {"id": "d1", "names": ["tun"], "restart": True})
    p = vm.exec("d1", TUN)
    assert p.returncode == 0, p.stderr
    vm.call("ct.feature.disable", {"id": "d1", "names": ["tun"], "restart": True})
    p = vm.exec("d1", TUN)
    assert p.returncode != 0, p.stdout
    vm.call("ct.del", {"id": "d1", "force": True})
