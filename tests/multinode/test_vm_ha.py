"""A VM's replica on another node, seen from outside (the tiny VM, under
tcg): between btrfs pools each pass is a snapshot of the running guest's
disk, sent incrementally; the replica is a staged VM that does not start;
recovered there (its node gone), it boots with the disk of the last pass.
From a dir pool only a stopped VM is replicated (a whole copy). On the
three-node cluster, an HA VM whose node dies runs on its standby."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import require
from tests.helpers.multinode import btrfs_pool, subvolumes
from tests.helpers.vm import (COUNTER, counted, disk_counter, have_qemu, type_on_console,
                              vm_node_config, wait_console)
from tests.helpers.etcd import FENCE_MARGIN, LEASE_TTL
from tests.helpers.wait import in_seconds, wait_for

from .test_cluster_ha import kill_node, record
from .test_vm_migrate import _console, _console_socket

pytestmark = pytest.mark.root
ADDR = "192.0.2.20"


def btrfs_vm(cluster) -> None:
    """A btrfs pool ``bt`` and user vmuser in it (and in the default pool)
    on each node; VM v1 on the first node's (stopped), with a public address."""
    for n in cluster.nodes:
        btrfs_pool(n)
        n.osctl("user", "new", "vmuser", "--pool", "bt")
        n.osctl("user", "new", "vmuser")
    a = cluster.nodes[0]
    a.osctl("vm", "new", "v1", "--user", "bt:vmuser", "--template", "tinyvm",
            "-c", "1", "-m", "256M", "-d", "10G")
    a.osctl("vm", "netif", "new", "v1", "eth0")
    a.osctl("vm", "netif", "ip", "add", "v1", "eth0", ADDR)


@pytest.fixture
def vm_pair(make_cluster, tinyvm_image, tmp_path):
    """Nodes A and B that run VMs; B trusts A; ``btrfs_vm`` on them."""
    require(have_qemu())
    cluster = make_cluster(**vm_node_config(tmp_path),  # staged deletions' stages seconds apart
                           deletion={"notice": 0, "check_every": 0.2, "prepare": 1, "hard": 1,
                                     "purge": 30, "recycle": 60})
    a, b = cluster.nodes
    cluster.trust(a, b, "a")
    btrfs_vm(cluster)
    return cluster


def test_a_running_vms_replica_boots_on_its_node_with_the_last_pass(vm_pair):
    a, b = vm_pair.nodes
    a.osctl("vm", "start", "v1")
    wait_console(a, "v1", r"/ # ", timeout=60)
    type_on_console(_console_socket(a), COUNTER)  # the guest writes a counter to its disk
    wait_for(lambda: counted(_console(a)), 30, 0.2, "the guest's counter",
             until=lambda values: len(values) >= 5)

    first = a.osctl_json("vm", "replicate", "v1", b.dest, "--to-pool", "bt")
    assert first["stream"] == "btrfs"
    assert a.osctl_json("vm", "show", "v1")["send_log"]["replica"] is True
    staged = b.osctl_json("vm", "show", "v1")
    assert staged["state"] == "staged" and staged["send_log"]["stage"] == "rootfs"
    assert b.osctl("vm", "start", "v1", check=False).returncode == 6  # a replica never starts
    time.sleep(1)
    before = counted(_console(a))[-1]
    second = a.osctl_json("vm", "replicate", "v1", b.dest)
    after = counted(_console(a))[-1]
    assert second["taken"] > first["taken"]
    assert 0 < second["paused"] < 2, second  # the guest paused for the snapshot only
    print(f"pass 2: the guest paused {second['paused'] * 1000:.0f} ms")
    assert b.osctl_json("vm", "show", "v1")["send_log"]["stage"] == "sync"
    assert a.osctl_json("vm", "show", "v1")["state"] == "running"  # paused only for the snapshot
    wait_for(lambda: counted(_console(a))[-1] > after + 5, 10, 0.2, "the counter to go on")
    a.osctl("vm", "kill", "v1")  # its node goes (here: the VM dies there, its routes go)

    rec = b.osctl_json("vm", "recover", "v1", "--no-start")
    assert rec["taken"] == pytest.approx(second["taken"]) and 0 <= rec["data_age"] < 60
    shown = b.osctl_json("vm", "show", "v1")
    assert shown["state"] == "stopped" and shown["send_log"] is None
    values = disk_counter(Path(shown["disk_path"]))  # the last pass's disk, whole to its end
    assert values == list(range(1, len(values) + 1)) and before <= values[-1] <= after + 1
    b.osctl("vm", "start", "v1")
    wait_console(b, "v1", r"OSCTLD-VM-UP", timeout=60)
    wait_for(lambda: vm_pair.router.pings(ADDR), 30, message="the VM's address to answer at B")
    p = b.osctl("vm", "recover", "v1", check=False)  # recovered once: no replica any more
    assert p.returncode == 6 and "no replica" in p.stderr


def test_from_a_dir_pool_only_a_stopped_vm_is_replicated(vm_pair):
    a, b = vm_pair.nodes
    a.osctl("vm", "new", "v2", "--user", "default:vmuser", "--template", "tinyvm",
            "-c", "1", "-m", "256M", "-d", "10G")
    disk = Path(a.osctl_json("vm", "show", "v2")["disk_path"])
    with open(disk, "r+b") as f:  # something of its own on its disk
        f.seek(512)
        f.write(b"00000001")
    out = a.osctl_json("vm", "replicate", "v2", b.dest)
    assert out["stream"] == "tar"
    a.osctl("vm", "start", "v2")
    p = a.osctl("vm", "replicate", "v2", b.dest, check=False)
    assert p.returncode != 0 and "stop it first" in p.stderr, p.stderr
    a.osctl("vm", "kill", "v2")
    p = a.osctl("vm", "replicate", "v2", "198.51.100.99", check=False)
    assert p.returncode == 6 and "drop that first" in p.stderr, p.stderr
    a.osctl_json("vm", "replicate", "v2", b.dest)
    b.osctl_json("vm", "recover", "v2", "--no-start")
    assert disk_counter(Path(b.osctl_json("vm", "show", "v2")["disk_path"])) == [1]
    # A running VM's replica into a pool without snapshots is refused, and
    # leaves nothing there.
    a.osctl("vm", "start", "v1")
    p = a.osctl("vm", "replicate", "v1", b.dest, check=False)
    assert p.returncode != 0 and "pool default at" in p.stderr, p.stderr
    assert [v["id"] for v in b.osctl_json("vm", "ls")] == ["v2"]
    assert a.osctl_json("vm", "show", "v1")["send_log"] is None
    a.osctl("vm", "kill", "v1")
    # A replica dropped leaves nothing at its node.
    a.osctl_json("vm", "replicate", "v1", b.dest, "--to-pool", "bt")
    assert b.osctl_json("vm", "show", "v1")["state"] == "staged"
    p = a.osctl("vm", "del", "v1", check=False)
    assert p.returncode == 6 and "drop it first" in p.stderr, p.stderr
    a.osctl("vm", "drop-replica", "v1")
    assert a.osctl_json("vm", "show", "v1")["send_log"] is None
    assert [v["id"] for v in b.osctl_json("vm", "ls")] == ["v2"]
    assert not list((b.dir).glob("**/vm/.v1.*"))

    # Deleted by date, a replicated VM takes its replica down at the hard
    # stage as vm del --force does: nothing of it is left at either end,
    # its passes' btrfs snapshots neither. The standby's staged replica is
    # no VM to delete by date.
    a.osctl_json("vm", "replicate", "v1", b.dest, "--to-pool", "bt")
    a.osctl_json("vm", "replicate", "v1", b.dest)  # an incremental pass
    assert subvolumes(a, ".v1.send") and subvolumes(b, ".v1.recv")
    p = b.osctl("vm", "del", "v1", "--at", in_seconds(1), check=False)
    assert p.returncode == 6 and "delete it with --force" in p.stderr, p.stderr
    a.osctl("vm", "del", "v1", "--at", in_seconds(1))
    for n in (a, b):
        wait_for(lambda: n.osctl("vm", "show", "v1", check=False).returncode, 20,
                 message=f"v1 gone from {n.name}", until=lambda rc: rc == 3)
        assert not list(n.dir.glob("**/vm/.v1*")) and subvolumes(n, "v1") == []

    # What a daemon killed half way through a deletion left of a replica
    # goes at its next start, its read-only snapshots as subvolumes; a
    # staged replica's passes stay.
    a.osctl("vm", "new", "v3", "--user", "bt:vmuser", "--template", "tinyvm",
            "-c", "1", "-m", "256M", "-d", "10G")
    a.osctl_json("vm", "replicate", "v3", b.dest, "--to-pool", "bt")
    vms = Path(b.osctl_json("pool", "show", "bt")["path"]) / "vm"
    subprocess.run(["btrfs", "-q", "subvolume", "create", str(vms / "v9")], check=True)
    for left in (".v9.send", ".v9.recv"):
        (vms / left).mkdir()
        subprocess.run(["btrfs", "-q", "subvolume", "snapshot", "-r", str(vms / "v9"),
                        str(vms / left / "s1")], check=True)
    b.restart()
    assert subvolumes(b, "v9") == [] and not list(vms.glob("*v9*"))
    assert subvolumes(b, ".v3.recv") and b.osctl_json("vm", "show", "v3")["state"] == "staged"


def vm_state(node) -> str | None:
    shown = node.osctl("vm", "show", "v1", "-j", check=False)
    return None if shown.returncode else json.loads(shown.stdout)["state"]


def test_a_dead_nodes_ha_vm_boots_on_its_standby(make_cluster3, tinyvm_image, tmp_path):
    require(have_qemu())
    cluster = make_cluster3(**vm_node_config(tmp_path), cluster={"replication_interval": 5})
    a, b, c = cluster.nodes
    btrfs_vm(cluster)
    a.osctl("vm", "start", "v1")
    wait_console(a, "v1", r"/ # ", timeout=60)
    type_on_console(_console_socket(a), b"printf '%08d' 7 | dd of=/dev/vda bs=512 seek=1 "
                                        b"conv=notrunc,fsync 2>/dev/null; echo WRIT''TEN\n")
    wait_console(a, "v1", r"WRITTEN", timeout=20)
    wait_for(lambda: record(a, "vm/v1"), 15, 0.3, "the record of v1")
    a.osctl("vm", "set", "ha", "v1", "on", "--standby", b.name)
    since = time.time()
    wait_for(lambda: (record(a, "vm/v1") or {}).get("replica_at"), 20, 0.3, "a replica of v1",
             until=lambda at: at is not None and at > since)
    assert vm_state(b) == "staged" and vm_state(a) == "running"
    wait_for(lambda: cluster.router.pings(ADDR), 30, message=f"{ADDR} to answer on A")

    kill_node(cluster, a)  # its QEMU too: every process in its namespace
    start = time.monotonic()
    wait_for(lambda: vm_state(b), LEASE_TTL + FENCE_MARGIN + 15, 0.3, "v1 to run on the standby",
             until=lambda s: s == "running")
    print(f"v1 running on the standby {time.monotonic() - start:.1f} s after the kill")
    rec = record(c, "vm/v1")
    assert rec is not None and (rec["node"], rec["standby"]) == (b.name, a.name)
    assert disk_counter(Path(b.osctl_json("vm", "show", "v1")["disk_path"])) == [7]
    wait_console(b, "v1", r"OSCTLD-VM-UP", timeout=60)
    wait_for(lambda: cluster.router.pings(ADDR), 30, message=f"{ADDR} to answer on the standby")
