"""``osctl vm migrate`` between two nodes, under tcg: the tiny test VM moves
live while its shell writes a counter to its disk, and answers at its address
from the router before and after; a destination whose QEMU dies mid-way
leaves it running where it was; a stopped VM moves with its disk."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from tests.conftest import require
from tests.helpers.vm import (COUNTER, counted, disk_counter, have_qemu, type_on_console,
                              vm_cluster_with_tiny, vm_node_config, wait_console)
from tests.helpers.wait import wait_for
from tests.integration.test_vm import qemu_alive

pytestmark = pytest.mark.root
ADDR = "192.0.2.20"


@pytest.fixture
def vm_pair(make_cluster, tinyvm_image, tmp_path):
    """Nodes A and B that run VMs; B trusts A; user vmuser on both; VM v1 on
    A (stopped) with a public address."""
    require(have_qemu())
    cluster = make_cluster(**vm_node_config(tmp_path))
    cluster.trust(*cluster.nodes, "a")
    vm_cluster_with_tiny(cluster, "vmuser", ADDR)
    return cluster


def start_counting(node) -> None:
    node.osctl("vm", "start", "v1")
    wait_console(node, "v1", r"/ # ", timeout=60)
    type_on_console(_console_socket(node), COUNTER)
    wait_for(lambda: counted(_console(node)), 30, 0.2, "the guest's counter",
             until=lambda values: len(values) >= 10)


def _console_log(node) -> Path:
    return Path(node.osctl_json("vm", "show", "v1")["console_log"])


def _console_socket(node) -> Path:
    return _console_log(node).parent / "console.sock"


def _console(node) -> bytes:
    log = _console_log(node)
    return log.read_bytes() if log.exists() else b""


def nothing_left(node, pid: int | None, files: Path) -> None:
    """No VM, QEMU, files, tap or route of v1 on ``node``."""
    assert node.osctl_json("vm", "ls") == []
    if pid is not None:
        wait_for(lambda: not qemu_alive(pid), 10, 0.1, f"QEMU {pid} to be gone")
    assert not files.exists() and not any((node.run_dir / "vm").glob("*/v1"))
    assert node.nsexec("ip", "-o", "link", "show", "type", "tun").stdout.strip() == ""
    assert ADDR not in node.nsexec("ip", "route", "show").stdout


def test_a_running_vm_moves_live(vm_pair):
    router, (a, b) = vm_pair.router, vm_pair.nodes
    start_counting(a)
    wait_for(lambda: router.pings(ADDR), 30, message="the VM's address to answer at A")
    shown = a.osctl_json("vm", "show", "v1")
    files = Path(shown["disk_path"]).parent
    before = counted(_console(a))

    moved = a.osctl_json("vm", "migrate", "v1", b.dest)
    assert moved["live"] is True and moved["downtime_ms"] is not None

    nothing_left(a, shown["pid"], files)
    on_b = b.osctl_json("vm", "show", "v1")
    assert (on_b["state"], on_b["running_memory"], on_b["pending_restart"]) == \
        ("running", 256 << 20, False)
    assert ADDR in b.nsexec("ip", "route", "show").stdout
    wait_for(lambda: router.pings(ADDR), 10, message="the VM's address to answer at B")
    # The counter goes on at B, with no number missing, on the console and on the disk.
    wait_for(lambda: counted(_console(b)), 30, 0.2, "the counter at B",
             until=lambda values: len(values) >= 10)
    b.osctl("vm", "kill", "v1")
    at_b = counted(_console(b))
    # The console (which may drop a line under load) goes on after what A
    # showed; the disk holds every value, in order, none missing.
    assert at_b == sorted(set(at_b)) and at_b[0] > before[-1]
    on_disk = disk_counter(Path(on_b["disk_path"]))
    assert on_disk == list(range(1, len(on_disk) + 1)) and on_disk[-1] >= at_b[-1]


def test_a_destination_failing_midway_leaves_it_running_at_the_source(vm_pair):
    a, b = vm_pair.nodes
    start_counting(a)
    shown = a.osctl_json("vm", "show", "v1")
    killed: list[int] = []

    def kill_incoming_qemu() -> None:
        """B's QEMU for v1, killed as soon as it is there."""
        def pid() -> int | None:
            for f in (b.run_dir / "vm").glob("*/v1/qemu.pid"):
                try:
                    return int(f.read_text())
                except (OSError, ValueError):
                    pass
            return None

        found = wait_for(pid, 60, 0.02, "B's incoming QEMU")
        os.kill(found, signal.SIGKILL)
        killed.append(found)

    killer = threading.Thread(target=kill_incoming_qemu)
    killer.start()
    p = a.osctl("vm", "migrate", "v1", b.dest, check=False)
    killer.join()
    assert killed and p.returncode != 0, p.stderr
    assert b.osctl_json("vm", "ls") == []
    assert not (b.state_dir / "pools" / "default" / "vm" / "v1").exists()
    assert b.nsexec("ip", "-o", "link", "show", "type", "tun").stdout.strip() == ""
    # A runs it on, the same QEMU, its counter going.
    still = a.osctl_json("vm", "show", "v1")
    assert (still["state"], still["pid"], still["transfer"]) == ("running", shown["pid"], None)
    n = len(counted(_console(a)))
    wait_for(lambda: len(counted(_console(a))), 30, 0.2, "the counter to go on at A",
             until=lambda m: m > n + 5)


def test_a_stopped_vm_moves_with_its_disk(vm_pair):
    a, b = vm_pair.nodes
    start_counting(a)
    a.osctl("vm", "kill", "v1")
    shown = a.osctl_json("vm", "show", "v1")
    written = disk_counter(Path(shown["disk_path"]))
    moved = a.osctl_json("vm", "migrate", "v1", b.dest)
    assert moved["live"] is False
    nothing_left(a, None, Path(shown["disk_path"]).parent)
    on_b = b.osctl_json("vm", "show", "v1")
    assert (on_b["state"], on_b["disk"]) == ("stopped", 10 << 30)
    disk = Path(on_b["disk_path"])
    assert disk_counter(disk) == written and disk.stat().st_size == 10 << 30
    assert disk.stat().st_blocks * 512 < 64 << 20  # the holes came as holes
    b.osctl("vm", "start", "v1")
    wait_console(b, "v1", r"OSCTLD-VM-UP", timeout=60)
    wait_for(lambda: vm_pair.router.pings(ADDR), 30, message="the VM's address to answer at B")


@pytest.mark.parametrize("dropped_by", ["source", "operator"])
def test_the_source_daemon_killed_midway_undoes_the_move_when_it_restarts(vm_pair, dropped_by):
    """The send is in the VM's config on both nodes: B keeps it staged, also
    when its daemon restarts; A's restarted daemon has B drop its part (or
    B's operator has dropped it: vm del --force), then runs the guest on
    (the same QEMU)."""
    a, b = vm_pair.nodes
    start_counting(a)
    pid = a.osctl_json("vm", "show", "v1")["pid"]

    def kill_a_when_b_prepared() -> None:
        wait_for(lambda: any((b.run_dir / "vm").glob("*/v1/qemu.pid")), 60, 0.02,
                 "B's incoming QEMU")
        a.kill()

    killer = threading.Thread(target=kill_a_when_b_prepared)
    killer.start()
    p = a.osctl("vm", "migrate", "v1", b.dest, check=False)
    killer.join()
    assert p.returncode != 0
    # Meanwhile B holds it staged, in its config: also across a restart of B's daemon.
    for _ in range(2):
        staged = b.osctl_json("vm", "show", "v1")
        assert (staged["state"], staged["transfer"]["direction"]) == ("staged", "in")
        p = b.osctl("vm", "start", "v1", check=False)
        assert p.returncode == 6 and "staged" in p.stderr, p.stderr
        b.kill()
        b.start()
    if dropped_by == "operator":
        p = b.osctl("vm", "del", "v1", check=False)
        assert p.returncode == 6 and "staged" in p.stderr, p.stderr
        b.osctl("vm", "del", "v1", "--force")
        assert b.nsexec("ip", "-o", "link", "show", "type", "tun").stdout.strip() == ""
    a.start()
    wait_for(lambda: a.osctl_json("vm", "show", "v1"), 30, 0.2, "A to settle the send",
             until=lambda vm: vm["transfer"] is None)
    shown = a.osctl_json("vm", "show", "v1")
    assert (shown["state"], shown["pid"]) == ("running", pid)
    wait_for(lambda: b.osctl_json("vm", "ls"), 30, 0.2, "B to drop v1", until=lambda vms: vms == [])
    assert not (b.state_dir / "pools" / "default" / "vm" / "v1").exists()
    n = len(counted(_console(a)))
    wait_for(lambda: len(counted(_console(a))), 30, 0.2, "the counter to go on at A",
             until=lambda m: m > n + 5)


def test_the_destination_refuses_before_anything_is_copied(vm_pair):
    """An address taken at B, a VM ID taken there, a user missing there: each
    refused by B's first step, with its reason; nothing changes on either node."""
    a, b = vm_pair.nodes
    b.osctl("vm", "new", "taken", "--user", "vmuser", "--template", "tinyvm",
            "-c", "1", "-m", "256M", "-d", "10G")
    b.osctl("vm", "netif", "new", "taken", "eth0")
    b.osctl("vm", "netif", "ip", "add", "taken", "eth0", ADDR)
    before_a, before_b = a.osctl_json("vm", "ls"), b.osctl_json("vm", "ls")
    p = a.osctl("vm", "migrate", "v1", b.dest, check=False)
    assert p.returncode == 6 and ADDR in p.stderr, p.stderr
    b.osctl("vm", "netif", "ip", "del", "taken", "eth0", ADDR)
    b.osctl("vm", "new", "v1", "--user", "vmuser", "--template", "tinyvm",
            "-c", "1", "-m", "256M", "-d", "10G")
    p = a.osctl("vm", "migrate", "v1", b.dest, check=False)
    assert p.returncode == 4 and "VM 'v1' exists" in p.stderr, p.stderr
    b.osctl("vm", "del", "v1")
    a.osctl("user", "new", "other")
    a.osctl("vm", "new", "v2", "--user", "other", "--template", "tinyvm",
            "-c", "1", "-m", "256M", "-d", "10G")
    p = a.osctl("vm", "migrate", "v2", b.dest, check=False)
    assert p.returncode == 3 and "user other does not exist" in p.stderr, p.stderr
    assert [v["id"] for v in a.osctl_json("vm", "ls")] == ["v1", "v2"]
    assert all(v["transfer"] is None and v["state"] == "stopped" for v in a.osctl_json("vm", "ls"))
    assert [v["id"] for v in b.osctl_json("vm", "ls")] == [v["id"] for v in before_b]
    assert [v["id"] for v in before_a] == ["v1"]
    assert sorted(p.name for p in (b.state_dir / "pools" / "default" / "vm").iterdir()) == ["taken"]
