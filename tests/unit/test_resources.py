"""Cgroup layout detection, limits as cgroup files, groups and quotas: pure parts."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from osctl.protocol import OsctlError
from osctld.model.container import Container
from osctld.model.group import ancestors, check_group_path, parent_of, store_name
from osctld.model.limits import Limits, parse_limit
from osctld.model.quota import PRESETS, Quota, Usage, check, preset
from osctld.runtime.cgroup import layout as cgroups
from osctld.runtime.cgroup.tree import CgroupTree

HYBRID_MOUNTS = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_SELF = """\
9:name=systemd:/
8:pids:/
4:memory:/process_api/abc
2:cpuacct:/
1:cpu:/
0::/
"""
UNIFIED_MOUNTS = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"


def hybrid() -> cgroups.CgroupLayout:
    return cgroups.parse(HYBRID_MOUNTS, HYBRID_SELF)


def test_hybrid_layout_finds_each_controller_and_the_daemons_own_cgroup():
    layout = hybrid()
    assert layout.mode == cgroups.HYBRID
    mem = layout.for_controller("memory")
    assert (mem.version, mem.base) == (1, "/process_api/abc")
    assert str(mem.dir("osctl/pool.x")) == "/sys/fs/cgroup/memory/process_api/abc/osctl/pool.x"
    assert str(layout.for_controller("pids").dir("osctl")) == "/sys/fs/cgroup/pids/osctl"
    assert layout.lxc_key("memory", "memory.max") == "lxc.cgroup.memory.max"
    assert layout.for_controller("name=systemd") is None


def test_unified_layout_and_cgroup_namespace_root():
    layout = cgroups.parse(UNIFIED_MOUNTS, "0::/system.slice/osctld.service\n")
    assert layout.mode == cgroups.UNIFIED
    h = layout.hierarchies[0]
    assert (h.version, h.base) == (2, "/system.slice/osctld.service")
    inside = cgroups.Hierarchy(2, h.mount, "/system.slice", frozenset({"memory"}),
                               "/system.slice/osctld.service")
    assert str(inside.dir("osctl")) == "/sys/fs/cgroup/osctld.service/osctl"


def test_limits_become_v1_files_in_a_safe_order():
    tree = CgroupTree(hybrid(), "osctl")
    lim = Limits(cpu_limit=0.5, memory=64 << 20, swap=32 << 20, pids=100)
    files = [(s.file, s.value) for s in tree.settings(lim)]
    assert files == [("cpu.cfs_period_us", "100000"), ("cpu.cfs_quota_us", "50000"),
                     ("memory.limit_in_bytes", str(64 << 20)),
                     ("memory.memsw.limit_in_bytes", str(96 << 20)), ("pids.max", "100")]
    live = [(s.file, s.value) for s in tree.settings(Limits(memory=64 << 20), live=True)]
    # Live: memsw opened first, so lowering or raising memory never trips over it;
    # unset limits are lifted.
    assert live[2:4] == [("memory.memsw.limit_in_bytes", "-1"),
                         ("memory.limit_in_bytes", str(64 << 20))]
    assert ("pids.max", "max") in live and ("cpu.cfs_quota_us", "-1") in live
    lines = tree.lxc_lines("default", "/prod/web", "c1", Limits(pids=5))
    assert "lxc.cgroup.dir.container = osctl/pool.default/group.prod/group.web/ct.c1" in lines
    assert "lxc.cgroup.pids.max = 5" in lines


def test_limits_become_v2_files_on_a_unified_node(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    layout = cgroups.parse(f"30 23 0:26 / {tmp_path} rw - cgroup2 cgroup2 rw\n", "0::/\n")
    tree = CgroupTree(layout, "osctl")
    lim = Limits(cpu_limit=1.5, memory=1 << 30, swap=0, pids=50)
    assert [(s.file, s.value) for s in tree.settings(lim)] == [
        ("cpu.max", "150000 100000"), ("memory.max", str(1 << 30)), ("memory.swap.max", "0"),
        ("pids.max", "50")]
    assert "lxc.cgroup2.cpu.max = 150000 100000" in tree.lxc_lines("p", "/", "c", lim)
    tree.apply("osctl/pool.p", lim)  # writes the files, enabling controllers on the way
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert (tmp_path / "osctl/pool.p/pids.max").read_text() == "50"
    assert tree.read("osctl/pool.p") == lim


def test_a_vm_runs_in_its_cgroup_from_its_first_instruction(tmp_path):
    """``run_in``: the program's PID is in cgroup.procs of each hierarchy that
    holds groups (plain directories stand in for the v1 mounts here)."""
    layout = cgroups.CgroupLayout(tuple(
        cgroups.Hierarchy(1, tmp_path / c, "/", frozenset({c}), "/") for c in ("cpu", "memory", "pids")))
    tree = CgroupTree(layout, "osctl")
    rel = tree.vm("p", "/prod/web", "v1")
    assert rel == "osctl/pool.p/group.prod/group.web/vm.v1"
    tree.make(rel)
    argv = tree.run_in(rel, ["sh", "-c", 'echo "$$ $0 $1"', "a b", "--"])
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()
    pid = out[0]
    assert out[1:] == ["a", "b", "--"]  # its arguments pass untouched
    for c in ("cpu", "memory", "pids"):
        assert (tmp_path / c / rel / "cgroup.procs").read_text().strip() == pid
    # A cgroup it cannot join: the program never runs.
    shutil.rmtree(tmp_path / "pids" / rel)
    p = subprocess.run(tree.run_in(rel, ["echo", "RAN"]), capture_output=True, text=True)
    assert p.returncode != 0 and "RAN" not in p.stdout


def test_parse_limit():
    assert parse_limit("cpu_limit", "0.5", 8) == ("cpu_limit", 0.5)
    assert parse_limit("memory", "1G", 8) == ("memory", 1 << 30)
    assert parse_limit("pids", "none", 8) == ("pids", None)
    for name, value in (("cpu_limit", "9"), ("cpu_limit", "x"), ("memory", "1k"),
                        ("pids", "0"), ("bogus", "1")):
        with pytest.raises(OsctlError):
            parse_limit(name, value, 8)
    with pytest.raises(OsctlError, match="unknown limit 'cpu-lim': use cpu_limit, memory"):
        parse_limit("cpu-lim", "1", 8)
    assert Limits(memory=5, pids=3).tightest(Limits(memory=4, cpu_limit=1)) == \
        Limits(cpu_limit=1, memory=4, pids=3)


def test_the_old_wire_spellings_of_limits_and_quotas_are_accepted_for_one_release():
    assert parse_limit("cpu-limit", "0.5", 8) == ("cpu_limit", 0.5)
    assert Limits().updated({"cpu-limit": "1", "memory": "1G"}, 8) == \
        Limits().updated({"cpu_limit": "1", "memory": "1G"}, 8)
    assert Quota().updated({"ipv6-64": "3"}) == Quota().updated({"ipv6_64": "3"}) == Quota(ipv6_64=3)
    with pytest.raises(OsctlError, match="unknown quota 'ipv6-65': use cpus, memory, disk, ipv4, ipv6_64"):
        Quota().updated({"ipv6-65": "3"})


def test_group_paths():
    assert check_group_path("/prod//web/") == "/prod/web"
    assert ancestors("/prod/web") == ["/prod/web", "/prod", "/"]
    assert parent_of("/prod") == "/" and parent_of("/") is None
    assert store_name("/") == "_root" and store_name("/a/b") == "a/b"
    for bad in ("prod", "/Prod", "/a/../b", "/-x"):
        with pytest.raises(OsctlError):
            check_group_path(bad)


def ct(name: str, **kw) -> Container:
    return Container(id=name, pool="p", user="u", distribution="busybox", version="1", **kw)


def test_quota_check_names_the_quota_and_needs_own_limits():
    q = preset("staging")
    assert q == PRESETS["staging"] and q.containers == 4 and q.memory == 4 << 30
    a = ct("a", limits=Limits(cpu_limit=6, memory=3 << 30), disk=100 << 30)
    before = Usage.of([a])
    big = ct("b", limits=Limits(cpu_limit=3, memory=1 << 30), disk=10 << 30)
    with pytest.raises(OsctlError, match="quota cpus of user u is 8: this would make it 9"):
        check("u", q, before, Usage.of([a, big]), big)
    nolimit = ct("c", limits=Limits(memory=1 << 20), disk=1 << 30)
    with pytest.raises(OsctlError, match="needs a cpu_limit of its own"):
        check("u", q, before, Usage.of([a, nolimit]), nolimit)
    ok = ct("d", limits=Limits(cpu_limit=2, memory=1 << 30), disk=20 << 30)
    check("u", q, before, Usage.of([a, ok]), ok)
    # A change that does not touch the missing limit passes (e.g. an address).
    check("u", q, before, Usage.of([a, nolimit]), nolimit, previous=nolimit)
    # Without quotas anything goes.
    check("u", Quota(), before, Usage.of([a, nolimit]), nolimit)


def test_quota_values_and_addresses():
    q = Quota().updated({"memory": "4G", "ipv6_64": "32", "cpus": "1.5"})
    assert (q.memory, q.ipv6_64, q.cpus) == (4 << 30, 32, 1.5)
    assert q.updated({"memory": "none"}).memory is None
    with pytest.raises(OsctlError):
        q.updated({"ram": "1G"})
    u = Usage().with_addresses(["192.0.2.1/32", "198.51.100.0/30", "2001:db8::1/128",
                                "2001:db8::2/128", "2001:db8:1::/64", "2001:db8:100::/62"])
    assert (u.ipv4, u.ipv6_64) == (5, 6)


def test_disk_quota_does_not_refuse_all_on_a_pool_without_disk_quotas():
    q = preset("staging")
    c = ct("a", limits=Limits(cpu_limit=1, memory=1 << 30))
    with pytest.raises(OsctlError, match="needs a disk of its own"):
        check("u", q, Usage(), Usage.of([c]), c)
    check("u", q, Usage(), Usage.of([c]), c, unenforceable=frozenset({"disk"}))


def test_pool_state_checks_a_users_quota_with_addresses(tmp_path):
    """Containers and VMs and their netifs' addresses count, an address
    inside a prefix routed to it once: as ``user show`` shows them."""
    from osctld.model.idmap import IdRange, MapEntry
    from osctld.model.netif import NetIf, NetRoute
    from osctld.model.pool import Pool
    from osctld.model.user import User
    from osctld.model.vm import VM
    from osctld.state import PoolState

    def with_ips(server, *addresses: str, routes=()):
        server.netifs = [NetIf("eth0", addresses=list(addresses), routes=[NetRoute(r) for r in routes])]
        return server

    m = [MapEntry(0, 1_000_000, 65536)]
    pstate = PoolState(Pool("p", "dir", tmp_path), IdRange())
    pstate.users["u"] = User("u", "p", m, m, quota=Quota(ipv4=2, ipv6_64=2, containers=3))
    pstate.cts["a"] = with_ips(ct("a"), "192.0.2.1/32", "2001:db8:1::1/128", routes=["2001:db8:1::/64"])
    pstate.vms["v"] = with_ips(VM(id="v", pool="p", user="u", template="debian", version="12", cores=1, memory=1 << 30, disk=1 << 30), "2001:db8:2::1/128")
    usage = Usage.of(pstate.instances_of("u"))
    assert (usage.containers, usage.ipv4, usage.ipv6_64) == (2, 1, 2)
    pstate.check_quota(with_ips(ct("b"), "192.0.2.2/32"))  # fits
    with pytest.raises(OsctlError) as e:
        pstate.check_quota(with_ips(ct("b"), "192.0.2.2/32", "192.0.2.3/32", "2001:db8:3::1/128"))
    # Every quota it breaks, in one refusal.
    assert "quota ipv4 of user u is 2: this would make it 3" in e.value.message
    assert "quota ipv6_64 of user u is 2: this would make it 3" in e.value.message
    assert set(pstate.groups) == {"/", "/default"}


def test_a_quota_refusal_names_every_missing_limit():
    c = ct("a")
    with pytest.raises(OsctlError) as e:
        check("u", preset("staging"), Usage(), Usage.of([c]), c)
    for limit in ("cpu_limit", "memory", "disk"):
        assert f"needs a {limit} of its own" in e.value.message, e.value.message