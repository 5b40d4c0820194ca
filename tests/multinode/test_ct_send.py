"""Containers move between nodes: ct send and its stages, seen from outside
(the router pings the container's addresses; files, hostname and the data
written just before the stop are on the new node; nothing is left on the
old one) on dir and btrfs pools; cancel at each stage; a destination daemon
killed mid-transfer; bad input refused with nothing left."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.helpers.multinode import btrfs_pool
from tests.helpers.wait import wait_for

pytestmark = [pytest.mark.root, pytest.mark.debian, pytest.mark.usefixtures("debian_template")]
ADDRS = ["192.0.2.10", "203.0.113.10"]


def pool_of(node, backend: str) -> str:
    return btrfs_pool(node) if backend == "btrfs" else "default"


def running_ct(node, pool: str, ct: str = "web", start: bool = True) -> None:
    """A debian container of user alice with two public addresses, running."""
    node.osctl("user", "new", "alice", "--pool", pool)
    node.osctl("ct", "new", ct, "--user", f"{pool}:alice", "--template", "debian",
               "--hostname", "web1.example", timeout=300)
    node.osctl("ct", "netif", "new", ct, "eth0")
    for a in ADDRS:
        node.osctl("ct", "netif", "ip", "add", ct, "eth0", a)
    if start:
        node.osctl("ct", "start", ct, "--wait")


def cgroups_of(node, ct: str) -> list[Path]:
    """The container's cgroup directories, wherever the node's tree is."""
    out = []
    for top, dirs, _ in os.walk("/sys/fs/cgroup"):
        if f"osctl-{node.name}" in dirs:
            out += Path(top, f"osctl-{node.name}").glob(f"**/ct.{ct}")
        if top.count("/") > 6:
            dirs.clear()
    return out


def nothing_left(node, ct: str = "web", user_pool: str = "default") -> None:
    """On ``node``: no container, rootfs, veth, route, cgroup or subuid line of it."""
    assert all(c["id"] != ct for c in node.osctl_json("ct", "ls"))
    assert not list(node.dir.glob(f"**/ct/{ct}")), list(node.dir.glob(f"**/ct/{ct}"))
    links = json.loads(node.nsexec("ip", "-j", "link").stdout)
    assert [x["ifname"] for x in links if x["ifname"].startswith("osv")] == []
    routes = node.nsexec("ip", "route").stdout
    assert not any(a in routes for a in ADDRS), routes
    assert cgroups_of(node, ct) == []
    assert node.subid_lines() == [] and node.subid_lines("subgid") == []


@pytest.mark.parametrize("backend", ["dir", "btrfs"])
def test_a_running_container_moves_with_its_addresses(pair, backend):
    a, b = pair.nodes
    router = pair.router
    src_pool, dst_pool = pool_of(a, backend), pool_of(b, backend)
    running_ct(a, src_pool)
    if backend == "btrfs":  # a disk quota (qgroup limit) goes along
        a.osctl("ct", "set", "disk", "web", "3G")
    a.exec("web", "sh", "-c", "echo kept > /root/kept")
    for addr in ADDRS:
        wait_for(lambda: router.pings(addr), message=f"{addr} to answer on A")
    assert cgroups_of(a, "web") != []

    a.osctl("ct", "send", "config", "web", b.dest, "--to-pool", dst_pool)
    staged = b.osctl_json("ct", "show", "web")
    assert staged["state"] == "staged" and staged["send_log"]["stage"] == "config"
    assert b.osctl("ct", "start", "web", check=False).returncode == 6  # conflict: staged
    a.osctl("ct", "send", "rootfs", "web")
    a.osctl("ct", "send", "sync", "web")
    assert a.osctl_json("ct", "show", "web")["send_log"]["stage"] == "sync"
    # A process's data written just before the stop goes along.
    a.exec("web", "sh", "-c", "echo last > /root/last")
    a.osctl("ct", "send", "state", "web")

    shown = b.osctl_json("ct", "show", "web")
    assert shown["state"] == "running" and shown["send_log"] is None
    assert b.exec("web", "cat", "/root/kept", "/root/last").stdout.split() == ["kept", "last"]
    assert b.exec("web", "hostname").stdout.strip() == "web1.example"
    for addr in ADDRS:
        wait_for(lambda: router.pings(addr), message=f"{addr} to answer on B")
    assert a.osctl_json("ct", "show", "web")["state"] == "migrating"
    if backend == "btrfs":
        path = b.osctl_json("pool", "show", dst_pool)["path"]
        limits = b.nsexec("btrfs", "qgroup", "show", "-r", "--raw", path).stdout
        assert str(3 << 30) in limits, limits
    a.osctl("ct", "send", "cleanup", "web")
    nothing_left(a)
    # B's copy lives on as any other: it stops and starts.
    b.osctl("ct", "restart", "web")
    wait_for(lambda: router.pings(ADDRS[0]), message="the address to answer after a restart")


def small_ct(node, ct: str = "bb", addr: str = "192.0.2.20", pool: str = "default") -> None:
    """A running busybox container of user bob with one public address."""
    node.osctl("user", "new", "bob", "--pool", pool)
    node.osctl("ct", "new", ct, "--user", f"{pool}:bob", "--template", "busybox")
    node.osctl("ct", "netif", "new", ct, "eth0")
    node.osctl("ct", "netif", "ip", "add", ct, "eth0", addr)
    node.osctl("ct", "start", ct)


def received_nothing(node) -> None:
    """The destination as before the transfer: no container, user, data or subuid line."""
    assert node.osctl_json("ct", "ls") == [] and node.osctl_json("user", "ls") == []
    assert not list(node.dir.glob("**/ct/*")), list(node.dir.glob("**/ct/*"))
    assert node.subid_lines() == [] and node.subid_lines("subgid") == []


def test_cancel_at_each_stage_leaves_nothing_there(pair):
    a, b = pair.nodes
    small_ct(a)
    for stages in ([], ["rootfs"], ["rootfs", "sync"]):
        a.osctl("ct", "send", "config", "bb", b.dest)
        for stage in stages:
            a.osctl("ct", "send", stage, "bb")
        assert b.osctl_json("ct", "show", "bb")["state"] == "staged"
        a.osctl("ct", "send", "cancel", "bb")
        received_nothing(b)
        shown = a.osctl_json("ct", "show", "bb")
        assert (shown["state"], shown["send_log"]) == ("running", None)
        wait_for(lambda: pair.router.pings("192.0.2.20"), message="the source to answer still")
    # Not before config, and not after state.
    p = a.osctl("ct", "send", "cancel", "bb", check=False)
    assert p.returncode == 6 and "not being sent" in p.stderr


@pytest.mark.parametrize("then", ["complete", "cancel"])
def test_the_destination_daemon_killed_mid_transfer(pair, then):
    a, b = pair.nodes
    small_ct(a)
    a.osctl("ct", "send", "config", "bb", b.dest)
    a.osctl("ct", "send", "rootfs", "bb")
    b.kill()  # SIGKILL, between rootfs and state
    b.start()
    staged = b.osctl_json("ct", "show", "bb")
    assert (staged["state"], staged["send_log"]["stage"]) == ("staged", "rootfs")
    if then == "cancel":
        a.osctl("ct", "send", "cancel", "bb")
        received_nothing(b)
        assert a.osctl_json("ct", "show", "bb")["state"] == "running"
        return
    a.osctl("ct", "send", "sync", "bb")
    a.osctl("ct", "send", "state", "bb")
    a.osctl("ct", "send", "cleanup", "bb")
    assert b.osctl_json("ct", "show", "bb")["state"] == "running"
    wait_for(lambda: pair.router.pings("192.0.2.20"), message="the address to answer on B")
    nothing_left(a, "bb")


def raw_call(src, dst, command: str):
    """A receive call made by hand with ``src``'s key: (exit status, reply)."""
    p = src.nsexec("ssh", "-F", "none", "-T", "-i", str(src.state_dir / "send" / "key"),
                   "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                   "-o", "UserKnownHostsFile=/dev/null", "-l", "osctld-recv", dst.ip, command,
                   check=False)
    return p.returncode, json.loads(p.stdout.splitlines()[-1])


def test_bad_input_is_refused_and_leaves_nothing(make_cluster):
    cluster = make_cluster()
    a, b = cluster.nodes
    cluster.trust(a, b, "a")
    small_ct(a)
    # A token that names no transfer.
    rc, reply = raw_call(a, b, 'ct.receive.state {"token": "nope"}')
    assert rc == 3 and "no transfer with token" in reply["error"]["message"]
    rc, reply = raw_call(a, b, "ct.receive.nothing {}")
    assert rc == 2 and "unknown receive verb" in reply["error"]["message"]
    # An ID taken there, an address taken there.
    small_ct(b, "bb", "192.0.2.99")
    p = a.osctl("ct", "send", "config", "bb", b.dest, check=False)
    assert p.returncode == 4 and "container bb exists" in p.stderr, p.stderr
    b.osctl("ct", "del", "bb", "--force")
    b.osctl("user", "del", "bob")
    small_ct(b, "other", "192.0.2.20")
    p = a.osctl("ct", "send", "config", "bb", b.dest, check=False)
    assert p.returncode == 6 and "192.0.2.20" in p.stderr, p.stderr
    assert [c["id"] for c in b.osctl_json("ct", "ls")] == ["other"]
    b.osctl("ct", "del", "other", "--force")
    b.osctl("user", "del", "bob")
    # A pool too small for it.
    small = btrfs_pool(b, "tiny", "256M")
    a.exec("bb", "dd", "if=/dev/zero", "of=/root/big", "bs=1M", "count=300")
    p = a.osctl("ct", "send", "config", "bb", b.dest, "--to-pool", small, check=False)
    assert p.returncode == 6 and "MiB free" in p.stderr, p.stderr
    # A --ctid the key does not allow; a stage before config.
    b.osctl("receive", "authorized-keys", "del", "a")
    cluster.trust(a, b, "a", "--ctid", "web*")
    p = a.osctl("ct", "send", "config", "bb", b.dest, check=False)
    assert p.returncode == 7 and "may send containers web* only" in p.stderr, p.stderr
    p = a.osctl("ct", "send", "rootfs", "bb", check=False)
    assert p.returncode == 6 and "begin with ct send config" in p.stderr
    received_nothing(b)
    assert a.osctl_json("ct", "show", "bb")["send_log"] is None


def test_ct_send_does_every_stage(pair):
    a, b = pair.nodes
    small_ct(a)
    p = a.osctl("ct", "send", "bb", b.dest, "--as-id", "bb2")
    assert "[rootfs]" in p.stderr and "[state]" in p.stderr, p.stderr  # progress on stderr
    assert b.osctl_json("ct", "show", "bb2")["state"] == "running"
    wait_for(lambda: pair.router.pings("192.0.2.20"), message="the address to answer on B")
    nothing_left(a, "bb")


def test_ctrl_c_cancels_and_the_destination_keeps_nothing(pair):
    import signal
    import subprocess

    from tests.helpers.node import OSCTL

    a, b = pair.nodes
    small_ct(a)
    a.exec("bb", "dd", "if=/dev/urandom", "of=/root/big", "bs=1M", "count=200")
    p = subprocess.Popen([OSCTL, "--socket", str(a.socket), "ct", "send", "bb", b.dest],
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert p.stderr is not None
    seen = []
    for line in p.stderr:  # the full copy has begun: its progress shows
        seen.append(line)
        if line.startswith("[rootfs]"):
            break
    p.send_signal(signal.SIGINT)
    rest = p.communicate(timeout=60)[1]
    assert p.returncode == 130, "".join(seen) + rest
    received_nothing(b)
    shown = a.osctl_json("ct", "show", "bb")
    assert (shown["state"], shown["send_log"]) == ("running", None)
