"""Staged deletion with stages seconds apart (the node's deletion config),
seen from outside: what a soft-deleted container keeps and refuses, cancel,
what the hard stage frees, the name held until recycle, and a daemon that was
down across stage times catching up in order."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.conftest import missing_capability, require
from tests.helpers import node as test_node
from tests.helpers.vm import have_qemu, vm_node_config
from tests.helpers.wait import in_seconds, wait_for

ADDR = "192.0.2.30"


@pytest.fixture
def make_node(request):
    """A test node with deletion stages given in seconds, cleaned up after."""
    require(missing_capability())
    made: list[test_node.TestNode] = []

    def make(config: dict | None = None, **deletion) -> test_node.TestNode:
        made.append(test_node.TestNode(config={
            **(config or {}), "deletion": {"notice": 0, "check_every": 0.2, **deletion}}))
        return made[-1].start()

    try:
        yield make
    finally:
        for n in made:
            if getattr(request.node, "rep_call_failed", False):
                print(n.log_tail(80))
            n.cleanup()


def _with_address(node, ct: str, addr: str = ADDR) -> None:
    node.osctl("ct", "new", ct, "--user", "alice")
    node.osctl("ct", "netif", "new", ct, "eth0")
    node.osctl("ct", "netif", "ip", "add", ct, "eth0", addr)


def _running(node, ct: str = "d1") -> Path:
    """Its rootfs: a running container of alice's with an address."""
    node.osctl("user", "new", "alice")
    _with_address(node, ct)
    node.osctl("ct", "start", ct)
    return Path(node.osctl_json("ct", "show", ct)["rootfs"])


def _stages(node, ct: str) -> list[str]:
    """The deletion lines of ``ct`` in the pool's history, in order."""
    return [r["cmd"].rpartition(".")[2] for r in node.osctl_json("history", "-n", "0")
            if r["cmd"].startswith("ct.deletion.") and r["args"]["id"] == ct]


def _state(node, ct: str) -> str:
    return node.osctl_json("ct", "show", ct)["state"]


def test_soft_keeps_everything_and_cancel_brings_it_back(make_node):
    node = make_node(prepare=1, hard=120, purge=121, recycle=122)
    rootfs = _running(node)

    # Bad dates change nothing.
    for at, words in (("soon", "invalid deletion date"), (in_seconds(-60), "cannot be deleted before")):
        p = node.osctl("ct", "del", "d1", "--at", at, check=False)
        assert p.returncode == 2 and words in p.stderr, p.stderr
    assert node.osctl_json("ct", "show", "d1")["deletion"] is None

    ct = node.osctl_json("ct", "del", "d1", "--at", in_seconds(2))
    assert set(ct["deletion"]["due"]) == {"prepare", "soft", "hard", "purge", "recycle"}
    assert ct["deletion"]["reached"] == {} and ct["state"] == "running"
    p = node.osctl("ct", "del", "d1", "--at", in_seconds(5), check=False)
    assert p.returncode == 6 and "cancel that first" in p.stderr, p.stderr

    wait_for(lambda: _state(node, "d1"), 15, message="d1 to be soft-deleted",
             until=lambda s: s == "soft-deleted")
    shown = node.osctl_json("ct", "show", "d1")
    assert set(shown["deletion"]["reached"]) == {"prepare", "soft"}
    assert "soft" in node.osctl("ct", "show", "d1").stdout  # the table shows the stages too
    # Stopped, kept whole: rootfs, config, its address still its own.
    assert shown["init_pid"] is None and (rootfs / "bin").is_dir()
    assert [n["addresses"] for n in shown["netifs"]] == [[f"{ADDR}/32"]]
    _with_address(node, "d2", "192.0.2.31")
    p = node.osctl("ct", "netif", "ip", "add", "d2", "eth0", ADDR, check=False)
    assert p.returncode == 6 and "d1" in p.stderr, p.stderr
    # Not startable, by the lifecycle table.
    p = node.osctl("ct", "start", "d1", check=False)
    assert p.returncode == 6 and "soft-deleted: cannot start" in p.stderr, p.stderr
    # A daemon restart keeps it so.
    node.restart()
    assert _state(node, "d1") == "soft-deleted"

    ct = node.osctl_json("ct", "del", "d1", "--cancel")
    assert (ct["state"], ct["deletion"]) == ("stopped", None)
    assert node.osctl_json("ct", "start", "d1")["state"] == "running"
    assert node.exec("d1", "ip", "addr").stdout.count(ADDR) == 1
    assert _stages(node, "d1") == ["scheduled", "prepare", "soft", "cancelled"]
    p = node.osctl("ct", "del", "d1", "--cancel", check=False)
    assert p.returncode == 6 and "not scheduled" in p.stderr, p.stderr


def test_stages_run_through_and_the_name_waits_for_recycle(make_node):
    node = make_node(prepare=1, hard=1, purge=2, recycle=6)
    rootfs = _running(node)
    lxc_dir = node.run_dir / "lxc" / "default" / "d1"
    assert "lxc.idmap" in (lxc_dir / "config").read_text()
    node.osctl("ct", "del", "d1", "--at", in_seconds(1))

    def gone() -> bool:
        return node.osctl("ct", "show", "d1", check=False).returncode == 3

    wait_for(gone, 15, message="d1's hard stage")
    # What ct del frees: rootfs, its LXC directory (with its ID map), config,
    # and its address, which another container may now take.
    assert not rootfs.exists() and not lxc_dir.exists()
    assert not (node.state_dir / "pools/default/conf/ct/d1.yml").exists()
    _with_address(node, "d2", "192.0.2.31")
    node.osctl("ct", "netif", "ip", "add", "d2", "eth0", ADDR)

    p = node.osctl("ct", "new", "d1", "--user", "alice", check=False)
    assert p.returncode == 4 and "was deleted; its name can be used again from" in p.stderr, p.stderr
    p = node.osctl("ct", "del", "d1", "--cancel", check=False)
    assert p.returncode == 6 and "past its hard deletion stage" in p.stderr, p.stderr
    wait_for(lambda: node.osctl("ct", "new", "d1", "--user", "alice", check=False).returncode == 0,
             20, 0.5, "d1's name to be free again")
    assert _stages(node, "d1") == ["scheduled", "prepare", "soft", "hard", "purge", "recycle"]


def test_a_daemon_down_across_stages_catches_up_in_order(make_node):
    node = make_node(prepare=1, hard=1, purge=60, recycle=61)
    rootfs = _running(node)
    at = time.time() + 2
    node.osctl("ct", "del", "d1", "--at", datetime.fromtimestamp(at, timezone.utc).isoformat())
    node.kill()  # SIGKILL, before the first stage (at - 1)
    time.sleep(max(0.0, at + 1.5 - time.time()))  # past prepare, soft and hard
    node.start()
    # Caught up before the daemon answered: stopped and deleted, in order.
    assert node.osctl("ct", "show", "d1", check=False).returncode == 3
    assert not rootfs.exists()
    lines = [r for r in node.osctl_json("history", "-n", "0") if r["cmd"].startswith("ct.deletion.")]
    assert [r["cmd"] for r in lines] == [f"ct.deletion.{s}" for s in
                                         ("scheduled", "prepare", "soft", "hard")]
    assert [r["time"] for r in lines] == sorted(r["time"] for r in lines)


def test_schedule_is_kept_across_a_kill(make_node):
    """The schedule is in the container's config: a kill loses nothing."""
    node = make_node(prepare=1, hard=120, purge=121, recycle=122)
    node.osctl("user", "new", "alice")
    node.osctl("ct", "new", "d1", "--user", "alice")
    due = node.osctl_json("ct", "del", "d1", "--at", in_seconds(3600))["deletion"]
    node.kill()
    node.start()
    assert node.osctl_json("ct", "show", "d1")["deletion"] == due


def test_a_vm_goes_through_the_same_stages(make_node, tinyvm_image, tmp_path):
    require(have_qemu())
    node = make_node(vm_node_config(tmp_path, stop_timeout=2), prepare=1, hard=4, purge=5, recycle=6)
    node.osctl("user", "new", "alice")
    node.osctl("vm", "new", "v1", "--user", "alice", "--template", "tinyvm", "-c", "1",
               "-m", "256M", "-d", "10G")
    disk = Path(node.osctl_json("vm", "show", "v1")["disk_path"])
    node.osctl("vm", "start", "v1")

    node.osctl("vm", "del", "v1", "--at", in_seconds(1))
    wait_for(lambda: node.osctl_json("vm", "show", "v1"), 15, message="v1 to be soft-deleted",
             until=lambda v: v["state"] == "soft-deleted")
    shown = node.osctl_json("vm", "show", "v1")
    assert (shown["pid"], shown["online"]) == (None, False) and disk.exists()
    p = node.osctl("vm", "start", "v1", check=False)
    assert p.returncode == 6 and "soft-deleted: cannot start" in p.stderr, p.stderr
    assert node.osctl_json("vm", "del", "v1", "--cancel")["state"] == "stopped"
    assert node.osctl_json("vm", "start", "v1")["state"] == "running"

    # Scheduled again and left to run: the disk goes, then the name comes back.
    node.osctl("vm", "del", "v1", "--at", in_seconds(1))
    wait_for(lambda: node.osctl("vm", "show", "v1", check=False).returncode, 20,
             message="v1's hard stage", until=lambda rc: rc == 3)
    assert not disk.exists()
    p = node.osctl("vm", "new", "v1", "--user", "alice", "--template", "tinyvm", "-c", "1",
                   "-m", "256M", "-d", "10G", check=False)
    assert p.returncode == 4 and "can be used again" in p.stderr, p.stderr
