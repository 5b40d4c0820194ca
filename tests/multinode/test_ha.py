"""High availability by replicas, seen from outside: a container's replica on
another node (ct send's config and rootfs once, then sync passes, never
state) is a staged container there that does not start; recovered there
(its node gone), it runs with its addresses from the last pass, and what was
written after that pass is not there."""

from __future__ import annotations

import pytest

from tests.helpers.multinode import btrfs_pool, subvolumes
from tests.helpers.wait import wait_for

from .test_ct_send import small_ct

pytestmark = [pytest.mark.root]
ADDR = "192.0.2.20"


@pytest.mark.parametrize("backend", ["dir", "btrfs"])
def test_a_replica_is_recovered_on_its_node_from_the_last_pass(pair, backend):
    a, b = pair.nodes
    src = btrfs_pool(a) if backend == "btrfs" else "default"
    dst = btrfs_pool(b) if backend == "btrfs" else "default"
    small_ct(a, pool=src)
    a.exec("bb", "sh", "-c", "echo one > /root/one")
    first = a.osctl_json("ct", "replicate", "bb", b.dest, "--to-pool", dst)
    assert first["stream"] == ("btrfs" if backend == "btrfs" else "rsync")
    assert a.osctl_json("ct", "show", "bb")["send_log"]["replica"] is True
    staged = b.osctl_json("ct", "show", "bb")
    assert staged["state"] == "staged" and staged["send_log"]["stage"] == "rootfs"
    assert b.osctl("ct", "start", "bb", check=False).returncode == 6  # a replica never starts
    a.exec("bb", "sh", "-c", "echo two > /root/two")
    second = a.osctl_json("ct", "replicate", "bb", b.dest)
    assert second["taken"] > first["taken"]
    assert b.osctl_json("ct", "show", "bb")["send_log"]["stage"] == "sync"
    a.exec("bb", "sh", "-c", "echo lost > /root/lost")  # after the last pass
    assert a.osctl_json("ct", "show", "bb")["state"] == "running"  # replication never stops it
    # Its node goes (here: the container stops there and its routes go).
    a.osctl("ct", "stop", "bb", "--timeout", "0")

    rec = b.osctl_json("ct", "recover", "bb")
    assert rec["started"] and rec["taken"] == pytest.approx(second["taken"])
    assert 0 <= rec["data_age"] < 60
    shown = b.osctl_json("ct", "show", "bb")
    assert shown["state"] == "running" and shown["send_log"] is None
    assert b.exec("bb", "cat", "/root/one", "/root/two").stdout.split() == ["one", "two"]
    assert b.exec("bb", "ls", "/root").stdout.split() == ["one", "two"]
    wait_for(lambda: pair.router.pings(ADDR), message=f"{ADDR} to answer on B")
    # Recovered once: it is no replica any more.
    p = b.osctl("ct", "recover", "bb", check=False)
    assert p.returncode == 6 and "no replica" in p.stderr
    # The copy left at A deleted: its pass snapshots go (as subvolumes); B's
    # container, no replica any more, is not A's to drop.
    a.osctl("ct", "del", "bb")
    assert b.osctl_json("ct", "show", "bb")["state"] == "running"
    if backend == "btrfs":
        assert subvolumes(a, "ct/bb") == [] and not list(a.dir.glob("**/ct/bb"))


def test_replicate_refuses_what_it_cannot_do(pair):
    a, b = pair.nodes
    small_ct(a)
    a.osctl("ct", "send", "config", "bb", b.dest + ":22")
    p = a.osctl("ct", "replicate", "bb", b.dest, check=False)
    assert p.returncode == 6 and "drop that first" in p.stderr, p.stderr
    a.osctl("ct", "send", "cancel", "bb")
    # A replicated container deleted: its replica goes at the other node too.
    a.osctl_json("ct", "replicate", "bb", b.dest)
    assert b.osctl_json("ct", "show", "bb")["state"] == "staged"
    a.osctl("ct", "del", "bb", "--force")
    assert b.osctl("ct", "show", "bb", check=False).returncode == 3
    p = b.osctl("ct", "recover", "nope", check=False)
    assert p.returncode == 3, p.stderr
