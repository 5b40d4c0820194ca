"""VMs under tcg: the tiny test VM (Debian's cloud kernel, busybox initramfs)
through its life, seen from outside: its serial console, its QEMU process,
its disk as the guest sees it, and the daemon dying under it."""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import time
from pathlib import Path

import pytest

from osctl.client import Client
from osctld.runtime.cgroup import layout as cgroups
from osctld.runtime.cgroup.tree import CgroupTree
from tests.conftest import missing_capability, require
from tests.helpers import node as test_node
from tests.integration.test_net import node_lan, node_pings
from tests.helpers.terminal import osctl_terminal
from tests.helpers.vm import SECTOR, console_size, have_qemu, vm_node_config, wait_console
from tests.helpers.wait import wait_for

GIB = 1 << 30


@pytest.fixture
def vmnode(tinyvm_image, tmp_path, request):
    require(missing_capability() or have_qemu())
    config = vm_node_config(tmp_path)
    n = test_node.TestNode(config=config)
    try:
        n.start()
        n.osctl("user", "new", "vmuser")
        yield n
    finally:
        if getattr(request.node, "rep_call_failed", False):
            print(n.log_tail(80))
        n.cleanup()


def qemu_alive(pid: int) -> bool:
    try:
        return b"qemu-system" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def new_tiny(node, vm: str = "v1", **opts) -> dict:
    args = {"cores": "1", "memory": "256M", "disk": "10G", **opts}
    flat = [x for k, v in args.items() for x in (f"--{k}", v)]
    return node.osctl_json("vm", "new", vm, "--user", "vmuser", "--template", "tinyvm", *flat)


def test_tiny_vm_life(vmnode):
    node = vmnode
    vm = new_tiny(node)
    assert (vm["state"], vm["cores"], vm["memory"], vm["disk"]) == ("stopped", 1, 256 << 20, 10 * GIB)
    shown = node.osctl_json("vm", "show", "v1")
    disk = Path(shown["disk_path"])
    assert disk.stat().st_size == 10 * GIB and disk.stat().st_blocks == 0  # sparse
    assert shown["disk_used"] == 0  # what the sparse disk holds

    vm = node.osctl_json("vm", "start", "v1")
    assert vm["state"] == "running" and qemu_alive(vm["pid"])
    pid = vm["pid"]
    wait_console(node, "v1", r"OSCTLD-VM-UP 1 cpus")
    wait_console(node, "v1", rf"OSCTLD-DISK {10 * GIB // SECTOR}\b")

    # The disk grows live and the guest sees the new size; it never shrinks.
    mark = console_size(node, "v1")
    assert node.osctl_json("vm", "set", "disk", "v1", "12G")["disk"] == 12 * GIB
    wait_console(node, "v1", rf"OSCTLD-DISK {12 * GIB // SECTOR}\b", after=mark, timeout=30)
    assert disk.stat().st_size == 12 * GIB
    p = node.osctl("vm", "set", "disk", "v1", "11G", check=False)
    assert p.returncode == 2 and "never shrink" in p.stderr
    assert node.osctl_json("vm", "show", "v1")["disk"] == 12 * GIB

    # Cores and memory are recorded, applied at the next start.
    node.osctl("vm", "set", "cores", "v1", "2")
    node.osctl("vm", "set", "memory", "v1", "320M")
    shown = node.osctl_json("vm", "show", "v1")
    assert (shown["cores"], shown["running_cores"], shown["pending_restart"]) == (2, 1, True)

    # kill -9 of the daemon: the VM runs on; the new daemon adopts it at once.
    node.kill()
    assert qemu_alive(pid)
    node.start()
    listed = {v["id"]: v for v in node.osctl_json("vm", "ls")}
    assert (listed["v1"]["state"], listed["v1"]["pid"], listed["v1"]["pending_restart"]) == \
        ("running", pid, True)

    # A clean ACPI power-down, driven by the new daemon.
    mark = console_size(node, "v1")
    t0 = time.time()
    assert node.osctl_json("vm", "stop", "v1", "--timeout", "60")["state"] == "stopped"
    assert time.time() - t0 < 30, "the guest did not react to the power button"
    wait_console(node, "v1", r"OSCTLD-POWERDOWN", after=mark, timeout=1)
    assert not qemu_alive(pid)

    # The next start applies the recorded cores and memory.
    vm = node.osctl_json("vm", "start", "v1")
    wait_console(node, "v1", r"OSCTLD-VM-UP 2 cpus")
    shown = node.osctl_json("vm", "show", "v1")
    assert (shown["running_cores"], shown["running_memory"], shown["pending_restart"]) == \
        (2, 320 << 20, False)
    node.osctl("vm", "kill", "v1")
    assert not qemu_alive(vm["pid"])
    node.osctl("vm", "del", "v1")
    assert not disk.exists() and node.osctl_json("vm", "ls") == []


class ConsoleSession:
    """``vm.console`` with one end of a socket pair as the caller's terminal."""

    def __init__(self, node, vm: str):
        self.ours, theirs = socket.socketpair()
        self.ours.settimeout(30)
        lifeline, self.keep = os.pipe()
        self.client = Client(str(node.socket)).connect()
        self.req = self.client.send("vm.console", {"id": vm},
                                    fds=(theirs.fileno(), theirs.fileno(), lifeline))
        theirs.close()
        os.close(lifeline)

    def type(self, text: bytes) -> None:
        self.ours.sendall(text)

    def read_until(self, marker: bytes) -> bytes:
        seen = b""
        while marker not in seen:
            chunk = self.ours.recv(4096)
            assert chunk, f"console closed; saw {seen!r}"
            seen += chunk
        return seen

    def end(self) -> str:
        """Why the daemon's relay ended."""
        try:
            return self.client.wait(self.req)["ended"]
        finally:
            self.client.close()
            self.ours.close()
            os.close(self.keep)


def test_console_online_and_guest_poweroff(vmnode):
    node = vmnode
    new_tiny(node, "c1")
    # online=true starts it; the console is relayed over descriptors we pass.
    assert node.osctl_json("vm", "set", "online", "c1", "true")["state"] == "running"
    wait_console(node, "c1", r"OSCTLD-VM-UP")
    con = ConsoleSession(node, "c1")
    con.type(b"\necho CONSOLE-$((6*7))\n")
    con.read_until(b"CONSOLE-42")
    # A second client is refused while we are attached.
    p = node.osctl("vm", "console", "c1", check=False, input="")
    assert p.returncode == 5, p.stderr
    con.type(b"\x01q")
    assert con.end() == "escape"

    # The same from a terminal, through osctl (which puts it in raw mode).
    master, slave = os.openpty()
    proc = subprocess.Popen([test_node.OSCTL, "--socket", str(node.socket), "vm", "console", "c1"],
                            stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)

    def read_until(marker: bytes) -> bytes:
        seen = b""

        def read() -> bytes:
            nonlocal seen
            if select.select([master], [], [], 1)[0]:
                seen += os.read(master, 4096)
            return seen

        return wait_for(read, 30, 0, f"{marker!r} on the terminal", until=lambda seen: marker in seen)

    read_until(b"Ctrl-a q leaves")  # the terminal is raw from here on
    os.write(master, b"\necho PTY-$((2+3))\n")
    read_until(b"PTY-5")
    os.write(master, b"\x01q")
    assert proc.wait(timeout=10) == 0
    os.close(master)

    # A caller killed while attached does not leave the console busy.
    con = ConsoleSession(node, "c1")
    os.close(con.keep)  # as if the caller were gone
    con.keep = os.open("/dev/null", os.O_RDONLY)
    assert con.end() == "caller gone"

    # online=false: the power button; the VM goes and stays offline.
    vm = node.osctl_json("vm", "set", "online", "c1", "false")
    assert (vm["state"], vm["online"]) == ("stopped", False)

    # A guest that ignores the power button is killed after --timeout.
    node.osctl("vm", "start", "c1")
    wait_console(node, "c1", r"OSCTLD-VM-UP")
    con = ConsoleSession(node, "c1")
    con.type(b"\nkillall acpid; echo ACPID-$((1+1))-GONE\n")
    con.read_until(b"ACPID-2-GONE")
    con.type(b"\x01q")
    con.end()
    mark = console_size(node, "c1")
    t0 = time.time()
    stop = subprocess.Popen([test_node.OSCTL, "--socket", str(node.socket), "-j", "vm", "stop", "c1",
                             "--timeout", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Waits longer than a second say what they wait for: the stop, and a
    # change that queues behind it for the VM's lock.
    wait_for(lambda: node.osctl_json("vm", "show", "c1")["state"] == "stopping", 10,
             message="the VM stopping")
    memory = node.osctl_json("vm", "show", "c1")["memory"]
    queued = node.osctl("vm", "set", "memory", "c1", str(memory))
    out, err = stop.communicate(timeout=60)
    assert stop.returncode == 0, err
    assert json.loads(out)["state"] == "stopped"
    assert 3 <= time.time() - t0 < 20
    assert "[wait] waiting up to 3 s for VM c1 to power down" in err
    assert "[wait] no ACPI answer from VM c1 after 3 s: killing it" in err
    assert re.search(r"\[wait\] waiting for vm/\S+/c1: vm\.stop \(op \d+:\d+\)", queued.stderr), \
        queued.stderr
    assert "OSCTLD-POWERDOWN" not in Path(node.osctl_json("vm", "show", "c1")["console_log"]) \
        .read_text(errors="replace")[mark:]

    # The guest powering itself off is noticed (the QMP stream ends).
    node.osctl("vm", "start", "c1")
    wait_console(node, "c1", r"OSCTLD-VM-UP")
    pid = node.osctl_json("vm", "show", "c1")["pid"]
    con = ConsoleSession(node, "c1")
    con.type(b"\npoweroff -f\n")
    assert con.end() == "console closed"
    wait_for(lambda: node.osctl_json("vm", "show", "c1")["state"], 10, 0.1, "c1 to be seen stopped",
             until=lambda state: state == "stopped")
    assert not qemu_alive(pid)


def test_node_policy_and_bad_input(vmnode):
    node = vmnode
    for opts, what in (({"cores": "9"}, "cores must be 1 to 8"),
                       ({"cores": "0"}, "cores must be 1 to 8"),
                       ({"memory": "128M"}, "memory must be at least 256 MiB"),
                       ({"disk": "5G"}, "disk must be at least 10240 MiB")):
        args = {"cores": "1", "memory": "256M", "disk": "10G", **opts}
        flat = [x for k, v in args.items() for x in (f"--{k}", v)]
        p = node.osctl("vm", "new", "bad", "--user", "vmuser", "--template", "tinyvm", *flat,
                       check=False)
        assert p.returncode == 2 and what in p.stderr, p.stderr
    p = node.osctl("vm", "new", "bad", "--user", "vmuser", "--template", "busybox", "-c", "1",
                   "-m", "256M", "-d", "10G", check=False)
    assert p.returncode == 8 and "no VM image" in p.stderr
    assert node.osctl_json("vm", "ls") == []
    assert not any((node.state_dir / "pools" / "default" / "vm").glob("*"))
    new_tiny(node, "p1")
    # A start that fails (its disk is gone) leaves the VM marked offline, as it was.
    Path(node.osctl_json("vm", "show", "p1")["disk_path"]).unlink()
    assert node.osctl("vm", "start", "p1", check=False).returncode != 0
    vm = node.osctl_json("vm", "show", "p1")
    assert (vm["state"], vm["online"]) == ("stopped", False)
    assert node.osctl("vm", "new", "p1", "--user", "vmuser", "--template", "tinyvm", "-c", "1",
                      "-m", "256M", "-d", "10G", check=False).returncode == 4
    assert node.osctl("vm", "set", "cores", "p1", "9", check=False).returncode == 2
    assert node.osctl("user", "del", "vmuser", check=False).returncode == 6


@pytest.mark.slow
@pytest.mark.usefixtures("debian_vm_image")
def test_debian_vm_boots_to_login(vmnode):
    """The debian template: Debian's kernel and systemd boot to a login prompt
    on the serial console with the routed network up, and systemd powers off
    on the ACPI button."""
    node = vmnode
    node.osctl("vm", "new", "deb1", "--user", "vmuser", "--template", "debian",
               "-c", "1", "-m", "512M", "-d", "10G")
    node.osctl("vm", "netif", "new", "deb1", "eth0")
    node.osctl("vm", "netif", "ip", "add", "deb1", "eth0", "198.51.100.7")
    pid = node.osctl_json("vm", "start", "deb1")["pid"]
    wait_console(node, "deb1", r"deb1 login:", timeout=900)
    # Its routed network is up (osctld-net.service, from the kernel command line).
    wait_for(lambda: node_pings(node, "198.51.100.7"), 60, message="the debian VM's routed address to answer")
    t0 = time.time()
    assert node.osctl_json("vm", "stop", "deb1", "--timeout", "300")["state"] == "stopped"
    assert time.time() - t0 < 300 and not qemu_alive(pid)
    wait_console(node, "deb1", r"(reboot: Power down|Reached target.*Power-Off)", timeout=1)


@pytest.mark.slow
@pytest.mark.usefixtures("debian_vm_image")
def test_debian_vm_a_way_in_and_a_root_that_grows(vmnode, tmp_path):
    """Root of the debian image is locked: vm passwd opens the console to
    it, --ssh-key puts root's key in place and sshd (host keys of its own)
    lets it in over the VM's routed address; the root filesystem grows to a
    disk grown while the VM was stopped, at its next boot."""
    node = vmnode
    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tour@test", "-f", str(key)],
                   check=True)
    node.osctl("vm", "new", "deb2", "--user", "vmuser", "--template", "debian",
               "-c", "1", "-m", "512M", "-d", "10G", "--ssh-key", f"{key}.pub")
    node.osctl("vm", "netif", "new", "deb2", "eth0")
    node.osctl("vm", "netif", "ip", "add", "deb2", "eth0", "192.0.2.30")
    node.osctl("vm", "set", "disk", "deb2", "12G")
    node.osctl("vm", "passwd", "deb2", "root", "--password", "vm-root-pw")
    assert "vm-root-pw" not in node.osctl("history").stdout
    p = node.osctl("vm", "passwd", "deb2", "nobody-here", "--password", "x", check=False)
    assert p.returncode == 2 and "no user 'nobody-here'" in p.stderr, p.stderr
    node.osctl("vm", "start", "deb2")
    p = node.osctl("vm", "passwd", "deb2", "root", "--password", "x", check=False)
    assert p.returncode == 6 and "stopped" in p.stderr, p.stderr
    wait_console(node, "deb2", r"deb2 login:", timeout=900)

    t = osctl_terminal(node, "vm", "console", "deb2")
    t.expect("Ctrl.a q")
    t.send("\r")
    t.expect("login: ", timeout=60)
    t.send("root\r")
    t.expect("Password: ", timeout=60)
    t.send("vm-root-pw\r")
    t.expect("# ", timeout=60)
    t.send("df -BM --output=size / | tail -n1; cat /root/.ssh/authorized_keys\r")
    size = int(t.expect(r"\d+M").rstrip("M"))
    assert size > 11 * 1024, f"the root filesystem is {size} MiB on a 12 GiB disk"
    t.expect("tour@test")
    t.send("\x01q")
    assert t.wait(30) == 0

    def ssh() -> subprocess.CompletedProcess:
        return node.nsexec("ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                           "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                           "root@192.0.2.30", "id -u; ls /etc/ssh/ssh_host_ed25519_key",
                           check=False, timeout=60)
    p = wait_for(ssh, 120, 2, "sshd in the VM to let root in with the key",
                 until=lambda p: p.returncode == 0)
    assert p.stdout.split() == ["0", "/etc/ssh/ssh_host_ed25519_key"], p.stdout


def test_vms_count_against_user_quotas(vmnode):
    node = vmnode
    node.osctl("user", "set", "quota", "vmuser", "memory=512M", "cpus=4")
    new_tiny(node, "q1")
    new_tiny(node, "q2", cores="2")
    p = node.osctl("vm", "new", "q3", "--user", "vmuser", "--template", "tinyvm", "-c", "1",
                   "-m", "256M", "-d", "10G", check=False)
    assert p.returncode == 6 and "quota memory of user vmuser is 512M" in p.stderr, p.stderr
    p = node.osctl("vm", "set", "cores", "q1", "3", check=False)
    assert p.returncode == 6 and "quota cpus" in p.stderr, p.stderr
    assert sorted(v["id"] for v in node.osctl_json("vm", "ls")) == ["q1", "q2"]
    assert node.osctl_json("vm", "show", "q1")["cores"] == 1
    # user show counts what the quotas count: the VMs and their addresses.
    node.osctl("vm", "netif", "new", "q1", "eth0")
    for a in ("192.0.2.50", "2001:db8:5::1", "2001:db8:6::1"):
        node.osctl("vm", "netif", "ip", "add", "q1", "eth0", a)
    shown = node.osctl_json("user", "show", "vmuser")
    assert shown["vms"] == ["q1", "q2"], shown
    usage = shown["quota_usage"]
    assert (usage["containers"], usage["cpus"], usage["memory"]) == (2, 3, 512 << 20), usage
    assert (usage["ipv4"], usage["ipv6_64"]) == (1, 2), usage


def vm_cgroup(node, vm: str, controller: str, group: str = "/default") -> Path:
    """A VM's cgroup directory on the host, named as the daemon names it."""
    tree = CgroupTree(cgroups.detect(), node.config["cgroup_root"])
    return tree.layout.for_controller(controller).dir(tree.vm("default", group, vm))


def test_vm_in_a_resource_group(vmnode):
    """QEMU runs in a cgroup below its group's, so the group's limits bind
    it; the cgroup goes when the VM stops."""
    node = vmnode
    p = node.osctl("vm", "new", "g1", "--user", "vmuser", "--template", "tinyvm", "--group", "/prod",
                   "-c", "1", "-m", "256M", "-d", "10G", check=False)
    assert p.returncode == 3 and "group '/prod' not found" in p.stderr, p.stderr
    assert node.osctl_json("vm", "ls") == []
    assert not any((node.state_dir / "pools" / "default" / "vm").glob("*"))

    node.osctl("group", "new", "/prod")
    assert new_tiny(node, "g1", group="/prod")["group"] == "/prod"
    assert node.osctl_json("vm", "ls")[0]["group"] == "/prod"
    pid = node.osctl_json("vm", "start", "g1")["pid"]
    wait_console(node, "g1", r"OSCTLD-VM-UP")
    for controller in ("memory", "pids", "cpu", "cpuacct"):
        procs = (vm_cgroup(node, "g1", controller, "/prod") / "cgroup.procs").read_text().split()
        assert str(pid) in procs, controller
    # The group is charged for the VM: its memory (guest RAM as QEMU's) and its threads.
    group = node.osctl_json("group", "show", "/prod")
    assert group["vm_ids"] == ["g1"]
    assert group["usage"]["memory"] > 50 << 20
    assert group["usage"]["pids"] >= len(os.listdir(f"/proc/{pid}/task")) > 1
    p = node.osctl("group", "del", "/prod", check=False)
    assert p.returncode == 6 and "VMs g1" in p.stderr, p.stderr
    p = node.osctl("vm", "set", "group", "g1", "/default", check=False)
    assert p.returncode == 6 and "stop it" in p.stderr, p.stderr

    node.osctl("vm", "stop", "g1", "--timeout", "60")
    for controller in ("memory", "pids"):
        assert not vm_cgroup(node, "g1", controller, "/prod").exists(), controller
    # Stopped, it may move; then the group may go.
    assert node.osctl_json("vm", "set", "group", "g1", "/default")["group"] == "/default"
    node.osctl("group", "del", "/prod")


def test_vm_routed_network(vmnode):
    """A VM's netif is a tap routed as a container's veth is, from the same
    allocator, with the same conflict checks; the guest is up on it."""
    node = vmnode
    new_tiny(node, "n1")
    node.osctl("vm", "netif", "new", "n1", "eth0")
    node.osctl("vm", "netif", "ip", "add", "n1", "eth0", "192.0.2.10")
    [nic] = node.osctl_json("vm", "netif", "ls", "n1")
    assert nic["interconnect"] and nic["addresses"] == ["192.0.2.10/32"]
    # No other netif of the node, a container's or a VM's, may take it.
    node.osctl("ct", "new", "c1", "--user", "vmuser")
    node.osctl("ct", "netif", "new", "c1", "eth0")
    for obj, inst in (("ct", "c1"), ("vm", "n1")):
        p = node.osctl(obj, "netif", "ip", "add", inst, "eth0", "192.0.2.10", check=False)
        assert p.returncode == 6 and "192.0.2.10" in p.stderr, p.stderr
    p = node.osctl("vm", "netif", "new", "n1", "br0", "--type", "bridge", "--link", "x", check=False)
    assert p.returncode == 8
    # Nor the node's own network, nor what is not for a host.
    lan = node_lan(node)
    for value, code in (("::ffff:192.0.2.10", 6), ("198.18.0.1", 6), ("255.255.255.255", 2)):
        p = node.osctl("vm", "netif", "ip", "add", "n1", "eth0", value, check=False)
        assert p.returncode == code, (value, p.stderr)
    p = node.osctl("vm", "netif", "route", "add", "n1", "eth0", "198.18.0.0/24", check=False)
    assert p.returncode == 6 and "lan0" in p.stderr, p.stderr
    assert node.nsexec("ip", "route", "show", "198.18.0.0/24").stdout == lan

    node.osctl("vm", "start", "n1")
    wait_console(node, "n1", r"OSCTLD-VM-UP")
    tap = nic["veth"]
    routes = node.nsexec("ip", "route", "show", "dev", tap).stdout
    assert "192.0.2.10 via" in routes
    wait_for(lambda: node_pings(node, "192.0.2.10"), 60, message="the VM's routed address to answer")
    # A change to a running VM waits for its next start.
    node.osctl("vm", "netif", "ip", "add", "n1", "eth0", "192.0.2.11")
    assert node.osctl_json("vm", "show", "n1")["pending_restart"] is True
    node.osctl("vm", "restart", "n1", "--timeout", "30")
    wait_console(node, "n1", r"OSCTLD-VM-UP")
    wait_for(lambda: node_pings(node, "192.0.2.11"), 60, message="the address added while it ran to answer")
    node.osctl("vm", "stop", "n1")
    wait_for(lambda: node.nsexec("ip", "link", "show", tap, check=False).returncode, 10, 0.1,
             f"tap {tap} to go")
