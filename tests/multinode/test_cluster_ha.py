"""High availability on the three-node cluster (``cluster3``), seen from
outside: an HA container is replicated to its standby; its node, the
leader, killed (daemon, every process in its namespace, its etcd member,
its containers), another node leads and it runs on the standby from the
last replica within the lease TTL plus the fencing margin, its address
answering from the router; the dead node restarted does not start its old
copy, and replicas reach it again (the stale copy gives way). A node cut off
from the others fences itself, and the container runs in exactly one place
afterwards; so does one back with a new lease before the leader recovered
it (its claim or the recovery wins), and one whose osctld alone was away
past the TTL (the restarted daemon kills its copy)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.etcd import FENCE_MARGIN, LEASE_TTL
from tests.helpers.wait import wait_for

from .test_ct_send import cgroups_of, small_ct

pytestmark = pytest.mark.root
ADDR = "192.0.2.20"
# Detection (a second's look), the task's pickup and the container's start
# come on top of the TTL and the margin.
RECOVERY = LEASE_TTL + FENCE_MARGIN + 12


@pytest.fixture
def cluster3_config() -> dict:
    return {"cluster": {"replication_interval": 5}}


def record(node, key: str) -> dict | None:
    return next((r for r in node.osctl_json("cluster", "ls") if f"{r['kind']}/{r['id']}" == key),
                None)


def state(node, ct: str = "bb") -> str | None:
    shown = node.osctl("ct", "show", ct, "-j", check=False)
    return None if shown.returncode else __import__("json").loads(shown.stdout)["state"]


def node_state(node, name: str) -> str | None:
    return {r["name"]: r["state"] for r in node.osctl_json("cluster", "node", "ls")}.get(name)


def leader(node) -> str | None:
    return next((r["name"] for r in node.osctl_json("cluster", "node", "ls") if r["leader"]), None)


def replica_after(node, since: float, timeout: float = 20) -> None:
    """Wait until a replica of bb taken after ``since`` is on its standby."""
    wait_for(lambda: (record(node, "ct/bb") or {}).get("replica_at"), timeout, 0.3,
             "a replica of bb", until=lambda at: at is not None and at > since)


def ha_container(cluster, a, b) -> None:
    """Container bb on node ``a``, autostart on, HA with ``b`` as standby,
    its file /root/kept in a replica there."""
    small_ct(a)
    a.osctl("ct", "set", "autostart", "bb", "on")
    a.exec("bb", "sh", "-c", "echo kept > /root/kept")
    wait_for(lambda: record(a, "ct/bb"), 15, 0.3, "the record of bb")
    a.osctl("ct", "set", "ha", "bb", "on", "--standby", b.name)
    replica_after(a, time.time())
    assert state(b) == "staged"
    wait_for(lambda: cluster.router.pings(ADDR), 10, message=f"{ADDR} to answer on A")


def kill_node(cluster, node) -> None:
    """The node dies: its osctld, its etcd member, every process in its
    namespace (its lxcfs too, whose mount goes as in a reboot), its
    container's processes, its uplink down."""
    node.kill()
    cluster.etcd.kill(node)
    pids = subprocess.run(["ip", "netns", "pids", node.name], capture_output=True,
                          text=True).stdout.split()
    pids += [pid for cg in cgroups_of(node, "bb") for procs in cg.rglob("cgroup.procs")
             for pid in procs.read_text().split()]
    for pid in pids:
        subprocess.run(["kill", "-9", pid], capture_output=True)
    for line in Path("/proc/mounts").read_text().splitlines():
        where = line.split()[1]
        if where.startswith(str(node.run_dir)):
            subprocess.run(["umount", "-l", where], capture_output=True)
    node.nsexec("ip", "link", "set", "uplink", "down")


def recovered_on(cluster, standby) -> float:
    """Seconds until bb runs on ``standby`` with its data and address."""
    start = time.monotonic()
    wait_for(lambda: state(standby), RECOVERY, 0.3, "bb to run on the standby",
             until=lambda s: s == "running")
    took = time.monotonic() - start
    assert standby.exec("bb", "cat", "/root/kept").stdout.strip() == "kept"
    wait_for(lambda: cluster.router.pings(ADDR), 10, message=f"{ADDR} to answer on the standby")
    return took


def test_the_dead_leaders_ha_container_runs_on_its_standby_and_comes_back_as_a_replica(cluster3):
    """The node that dies is the leader: the next one elected recovers its
    container (the leader dying, another node leading and acting)."""
    by_name = {n.name: n for n in cluster3.nodes}
    a = by_name[leader(cluster3.nodes[0])]
    b, c = [n for n in cluster3.nodes if n is not a]
    ha_container(cluster3, a, b)
    kill_node(cluster3, a)
    took = recovered_on(cluster3, b)
    print(f"the leader killed: bb recovered on the standby {took:.1f} s after the kill "
          f"(TTL {LEASE_TTL} s + margin {FENCE_MARGIN} s)")
    assert leader(c) in (b.name, c.name)
    rec = record(c, "ct/bb")
    assert rec is not None and (rec["node"], rec["standby"]) == (b.name, a.name)
    assert node_state(c, a.name) in ("offline", "fenced")

    # The dead node comes back: its copy (autostart on) is not started, and
    # is replaced by a replica of the recovered one.
    a.nsexec("ip", "link", "set", "uplink", "up")
    cluster3.etcd.start(a)
    back = time.time()
    a.start()
    a.start_sshd()  # killed with the rest: replicas come to it over SSH
    wait_for(lambda: node_state(c, a.name), 20, 0.5, f"{a.name} online again",
             until=lambda s: s == "online")
    p = a.osctl("ct", "start", "bb", check=False)
    assert p.returncode == 6 and f"lives on node {b.name} now" in p.stderr, p.stderr
    replica_after(c, back)
    assert state(a) == "staged"
    assert state(b) == "running" and cluster3.router.pings(ADDR)


def test_a_cut_off_node_fences_itself_and_the_container_runs_once(cluster3):
    a, b, c = cluster3.nodes
    ha_container(cluster3, a, b)
    a.nsexec("ip", "link", "set", "uplink", "down")  # the partition: a's containers run on
    cut = time.monotonic()
    wait_for(lambda: state(a), LEASE_TTL + FENCE_MARGIN + 2, 0.2, "A to fence bb",
             until=lambda s: s == "stopped")
    fenced = time.monotonic() - cut
    recovered_on(cluster3, b)
    print(f"A fenced bb {fenced:.1f} s after the cut (deadline TTL + margin = "
          f"{LEASE_TTL + FENCE_MARGIN} s after its last refresh)")

    a.nsexec("ip", "link", "set", "uplink", "up")  # the partition heals
    wait_for(lambda: node_state(c, a.name), 20, 0.5, f"{a.name} back",
             until=lambda s: s == "online")
    time.sleep(2)
    assert state(a) in ("stopped", "staged") and state(b) == "running"  # staged: a replica came
    assert record(c, "ct/bb")["node"] == b.name
    assert cluster3.router.pings(ADDR)


def running_on(nodes) -> list[str]:
    """The nodes where bb runs."""
    return [n.name for n in nodes if state(n) == "running"]


def test_an_osctld_away_past_the_ttl_finds_its_container_recovered_and_kills_its_copy(cluster3):
    """Only A's osctld is killed (SIGKILL), bb runs on there: a stopped
    daemon cannot fence, so after the TTL and the margin bb is recovered
    on B too; when A's osctld starts again it kills its copy at once (the
    records place bb on B), and bb runs in exactly one place."""
    a, b, c = cluster3.nodes
    ha_container(cluster3, a, b)
    a.kill()
    took = recovered_on(cluster3, b)
    a.start()
    began = time.monotonic()
    wait_for(lambda: state(a), 15, 0.3, "A to kill its copy of bb", until=lambda s: s != "running")
    print(f"osctld away: bb recovered on B {took:.1f} s after A's osctld was killed; the restarted "
          f"osctld killed its copy {time.monotonic() - began:.1f} s after it was started")
    assert "ran in two places" in a.log.read_text()
    assert running_on(cluster3.nodes) == [b.name]
    assert record(c, "ct/bb")["node"] == b.name
    wait_for(lambda: cluster3.router.pings(ADDR), 10, message=f"{ADDR} to answer on B")
    assert b.exec("bb", "cat", "/root/kept").stdout.strip() == "kept"


def test_a_node_back_with_a_new_lease_before_the_margin_runs_its_container_once(cluster3):
    """A's link to etcd is cut until its lease expired in etcd (C sees A
    offline: it fenced bb by then), and restored at once, before the
    leader's fencing margin passed: either A claims bb back and starts it,
    or the recovery won and it runs on B; in exactly one place, never
    none, within a bounded time."""
    a, b, c = cluster3.nodes
    ha_container(cluster3, a, b)
    a.nsexec("ip", "link", "set", "uplink", "down")
    cut = time.monotonic()
    # Later than the TTL when A's etcd member led etcd: a new etcd leader renews every lease.
    wait_for(lambda: node_state(c, a.name), LEASE_TTL + 15, 0.2, "A's lease to expire",
             until=lambda s: s in ("offline", "fenced"))
    a.nsexec("ip", "link", "set", "uplink", "up")
    restored = time.monotonic() - cut
    where: list[str] = []
    seen = []

    def once() -> bool:
        where[:] = running_on(cluster3.nodes)
        seen.append(list(where))
        return len(where) == 1

    wait_for(once, RECOVERY, 0.3, "bb to run in exactly one place")
    took = time.monotonic() - cut
    settled = time.monotonic() + LEASE_TTL + FENCE_MARGIN + 2  # a late recovery would show by then
    while time.monotonic() < settled:
        once()
        time.sleep(0.3)
    assert all(len(w) <= 1 for w in seen), seen
    assert len(where) == 1 and record(c, "ct/bb")["node"] == where[0], where
    wait_for(lambda: cluster3.router.pings(ADDR), 10, message=f"{ADDR} to answer on {where[0]}")
    print(f"lease expired, link back {restored:.1f} s after the cut: bb runs on "
          f"{'A (claimed back)' if where[0] == a.name else 'B (recovered)'} only, {took:.1f} s after the cut")
