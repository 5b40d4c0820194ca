"""Cgroup layout detection from mountinfo text."""

from osctld.runtime.cgroup.layout import HYBRID, LEGACY, UNIFIED, parse

HYBRID_TEXT = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
UNIFIED_TEXT = "30 23 0:27 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
LEGACY_TEXT = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n" \
              "33 31 0:30 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices\n"


def test_hybrid_node_drives_devices_and_memory_by_v1():
    layout = parse(HYBRID_TEXT)
    assert layout.mode == HYBRID
    assert layout.v1["devices"] == "/sys/fs/cgroup/devices"
    assert layout.v1["name=systemd"] == "/sys/fs/cgroup/systemd"
    assert layout.v2 == "/sys/fs/cgroup/unified"
    assert layout.lxc_key("devices", "devices.allow") == "lxc.cgroup.devices.allow"
    # pids has no v1 hierarchy here: it falls to the v2 mount
    assert layout.version("pids") == 2


def test_unified_node_uses_cgroup2_keys():
    layout = parse(UNIFIED_TEXT)
    assert layout.mode == UNIFIED
    assert layout.v1 == {}
    assert layout.lxc_key("devices", "devices.deny") == "lxc.cgroup2.devices.deny"
    assert layout.lxc_key("memory", "memory.max") == "lxc.cgroup2.memory.max"


def test_legacy_node_with_comounted_controllers():
    layout = parse(LEGACY_TEXT)
    assert layout.mode == LEGACY
    assert layout.v1["cpu"] == layout.v1["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    assert layout.version("devices") == 1


def test_lxc_paths_relative_on_v1_absolute_on_a_unified_node():
    """On a unified node the daemon lives in a leaf of its tree (settle), so
    LXC's paths relative to lxc-start's cgroup would land below that leaf:
    there they are absolute, through the daemon's base."""
    from pathlib import Path

    from osctld.model.limits import Limits
    from osctld.runtime.cgroup.layout import CgroupLayout, Hierarchy
    from osctld.runtime.cgroup.tree import CgroupTree

    v2 = Hierarchy(2, Path("/sys/fs/cgroup"), "/", frozenset({"cpu", "memory", "pids"}),
                   "/system.slice/osctld.service")
    lines = CgroupTree(CgroupLayout((v2,)), "osctl").lxc_lines("p", "/", "c1", Limits())
    assert "lxc.cgroup.relative = 1" not in lines
    assert "lxc.cgroup.dir.container = system.slice/osctld.service/osctl/pool.p/ct.c1" in lines
    assert "lxc.cgroup.dir.monitor.pivot = system.slice/osctld.service/osctl/monitor" in lines

    v1 = Hierarchy(1, Path("/sys/fs/cgroup/memory"), "/", frozenset({"memory"}), "/osctld")
    lines = CgroupTree(CgroupLayout((v1, v2)), "osctl").lxc_lines("p", "/", "c1", Limits())
    assert lines[:2] == ["lxc.cgroup.relative = 1", "lxc.cgroup.dir.container = osctl/pool.p/ct.c1"]
