"""distconfig's output applied for real: the busybox S40network script with
busybox ``ip`` and ``udhcpc``, Debian's interfaces file with ifupdown's own
``ifup``/``ifdown``, Alpine's with ifupdown-ng's, networkd's files with
systemd-networkd and the Red Hat keyfiles with NetworkManager, each inside a pair of network namespaces made here
("node" and "ct", joined by veths; the node also has a bridge with a DHCP
server on it). The host's own network is never touched: every command runs
inside those namespaces, and the rootfs paths the files name (/etc/...,
/run) are bind-mounted from a temporary rootfs in the private mount
namespace that ``ip netns exec`` gives each command."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from osctld.distconfig import for_distribution
from osctld.distconfig.netconfig import BRIDGE, ROUTED, IfaceConfig

NETWORKD = "/lib/systemd/systemd-networkd"
from tests.conftest import require
from tests.helpers.node import CACHE
from tests.helpers.wait import wait_for

# Unpacked into the test cache by scripts/setup.sh.
IFUPDOWN_NG, NETWORK_MANAGER = CACHE / "ifupdown-ng", CACHE / "network-manager"

ip4, ip6 = ipaddress.ip_address, ipaddress.ip_interface


def _missing(*tools: str) -> str | None:
    if os.geteuid() != 0:
        return "not root"
    gone = [t for t in tools if shutil.which(t) is None]
    return f"missing tools: {', '.join(gone)}" if gone else None


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check and r.returncode:
        raise AssertionError(f"{' '.join(cmd)}: exit {r.returncode}\n{r.stdout}{r.stderr}")
    return r


class Pair:
    """Two namespaces: the node (host side, bridge br0 with udhcpd) and the
    container (eth0 routed, eth1 and eth2 on the bridge)."""

    def __init__(self, tmp: Path):
        tag = uuid.uuid4().hex[:8]
        self.node, self.ct, self.tmp = f"dcn-{tag}", f"dcc-{tag}", tmp
        self.udhcpd: subprocess.Popen | None = None

    def n(self, *cmd: str, check: bool = True):
        return sh("ip", "netns", "exec", self.node, *cmd, check=check)

    def c(self, *cmd: str, check: bool = True):
        return sh("ip", "netns", "exec", self.ct, *cmd, check=check)

    def ct_shell(self, rootfs: Path, script: str, binds: tuple[str, ...]):
        """``script`` in the container's namespace, with ``binds`` (paths in
        the rootfs) mounted over the same paths of this private mount ns."""
        mounts = "".join(f"mount --bind {rootfs}/{b} /{b} && " for b in binds)
        return self.c("sh", "-c", mounts + script)

    def up(self) -> None:
        sh("ip", "netns", "add", self.node)
        sh("ip", "netns", "add", self.ct)
        self.n("ip", "link", "set", "lo", "up")
        self.c("ip", "link", "set", "lo", "up")
        self.n("ip", "link", "add", "h0", "type", "veth", "peer", "name", "eth0", "netns", self.ct)
        self.n("ip", "addr", "add", "10.100.0.1/30", "dev", "h0")
        self.n("ip", "addr", "add", "fe80::1/64", "dev", "h0")
        self.n("ip", "link", "set", "h0", "up")
        # The node's own "public" addresses, to check the container's source
        # address and default routes against.
        self.n("ip", "addr", "add", "198.51.100.1/32", "dev", "lo")
        self.n("ip", "addr", "add", "2001:db8:ffff::1/128", "dev", "lo")
        self.n("ip", "link", "add", "br0", "type", "bridge")
        self.n("ip", "addr", "add", "203.0.113.1/24", "dev", "br0")
        self.n("ip", "addr", "add", "2001:db8:1::1/64", "dev", "br0", "nodad")
        for host, inside in (("b1", "eth1"), ("b2", "eth2")):
            self.n("ip", "link", "add", host, "type", "veth", "peer", "name", inside, "netns", self.ct)
            self.n("ip", "link", "set", host, "master", "br0", "up")
        self.n("ip", "link", "set", "br0", "up")

    def host_routes(self) -> None:
        """What the net layer does on the host for the routed interface."""
        for a in routed(True).addresses[1:]:
            via = ["via", "10.100.0.2"] if a.version == 4 else []
            self.n("ip", f"-{a.version}", "route", "add", str(a.ip), *via, "dev", "h0")

    def start_udhcpd(self) -> None:
        conf = self.tmp / "udhcpd.conf"
        conf.write_text(f"start 203.0.113.100\nend 203.0.113.110\ninterface br0\n"
                        f"lease_file {self.tmp}/leases\npidfile {self.tmp}/udhcpd.pid\n"
                        "option subnet 255.255.255.0\n")
        (self.tmp / "leases").touch()
        self.udhcpd = subprocess.Popen(["ip", "netns", "exec", self.node, "busybox", "udhcpd", "-f", str(conf)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def down(self) -> None:
        """Whatever a test started in the namespaces (udhcpd, a udhcpc left
        by a failed check, networkd) goes with them."""
        for ns in (self.ct, self.node):
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.udhcpd:
            self.udhcpd.wait(timeout=10)
        for ns in (self.ct, self.node):
            sh("ip", "netns", "del", ns, check=False)

    @contextlib.contextmanager
    def daemon(self, script: str):
        """A network daemon of the container's distribution, run by ``script``
        in the container's namespace for the length of the block."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.ct, "sh", "-c", script],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield proc
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    def leased(self, dev: str, within: float = 15.0) -> str:
        """The address udhcpd leased to ``dev`` in the container."""
        def lease() -> str | None:
            for line in self.c("ip", "-4", "-o", "addr", "show", "dev", dev).stdout.splitlines():
                addr = ipaddress.ip_interface(line.split()[3]).ip
                if addr in ipaddress.ip_network("203.0.113.96/28"):
                    return str(addr)
            return None

        return wait_for(lease, within, message=f"a DHCP lease on {dev}")

    def wait_ping(self, ns: str, addr: str, within: float = 5.0) -> None:
        """Wait until ``addr`` answers a ping from namespace ``ns``."""
        wait_for(lambda: sh("ip", "netns", "exec", ns, "busybox", "ping", "-c1", "-W1", addr,
                            check=False).returncode == 0, within, message=f"{addr} to answer {ns}")


@pytest.fixture
def pair(tmp_path):
    p = Pair(tmp_path)
    try:
        p.up()
        yield p
    finally:
        p.down()


def routed(v6_default: bool) -> IfaceConfig:
    return IfaceConfig(
        name="eth0", kind=ROUTED,
        addresses=[ip6("10.100.0.2/30"), ip6("192.0.2.10/32"), ip6("192.0.2.11/32"), ip6("2001:db8::10/128")],
        gateway4=ip4("10.100.0.1"), src4=ip4("192.0.2.10"),
        gateway6=ip4("fe80::1") if v6_default else None, src6=ip4("2001:db8::10") if v6_default else None,
    )


def bridged(v6_default: bool) -> IfaceConfig:
    """On the node's bridge, no IPv4 gateway: the IPv4 default route stays
    eth0's. The IPv6 one is here when ``v6_default``: its source address
    goes through DAD first, which the tools must wait for."""
    return IfaceConfig(
        name="eth1", kind=BRIDGE, addresses=[ip6("203.0.113.50/24"), ip6("2001:db8:1::50/64")],
        gateway6=ip4("2001:db8:1::1") if v6_default else None,
        src6=ip4("2001:db8:1::50") if v6_default else None,
    )


def dhcp() -> IfaceConfig:
    return IfaceConfig(name="eth2", kind=BRIDGE, addresses=[], dhcp=True)


def ifaces(v6_via: str, with_dhcp: bool = True) -> list[IfaceConfig]:
    return [routed(v6_via == "eth0"), bridged(v6_via == "eth1")] + ([dhcp()] if with_dhcp else [])


# Which interface holds the IPv6 default route: the routed one (via the host
# veth's fe80::1) or the bridged one (via the bridge's address, after DAD).
V6_VIA = pytest.mark.parametrize("v6_via", ["eth0", "eth1"])


def assert_works(pair: Pair, v6_via: str) -> None:
    for addr in ("192.0.2.10", "192.0.2.11", "2001:db8::10", "203.0.113.50", "2001:db8:1::50"):
        pair.wait_ping(pair.node, addr)
    route = pair.c("ip", "route", "get", "198.51.100.1").stdout
    assert "via 10.100.0.1 dev eth0" in route and "src 192.0.2.10" in route, route
    pair.wait_ping(pair.ct, "198.51.100.1")
    route6 = pair.c("ip", "-6", "route", "get", "2001:db8:ffff::1").stdout
    want = "via fe80::1 dev eth0" if v6_via == "eth0" else "via 2001:db8:1::1 dev eth1"
    src6 = "2001:db8::10" if v6_via == "eth0" else "2001:db8:1::50"
    assert want in route6 and f"src {src6}" in route6, route6
    pair.wait_ping(pair.ct, "2001:db8:ffff::1")


@V6_VIA
@pytest.mark.parametrize("proc_sys", ["rw", "ro"])
def test_busybox_script_brings_the_network_up_and_down(v6_via, proc_sys, pair, tmp_path):
    """With /proc/sys read-only too (a container without LXC's writable
    /proc/sys/net), where the script cannot turn DAD off and must wait."""
    require(_missing("busybox", "ip"))
    rootfs, bindir = tmp_path / "rootfs", tmp_path / "bin"
    (rootfs / "run").mkdir(parents=True)
    bindir.mkdir()
    for applet in ("ip", "udhcpc"):
        (bindir / applet).symlink_to(shutil.which("busybox"))
    for_distribution("busybox")(rootfs).set_network(ifaces(v6_via))
    pair.host_routes()
    pair.start_udhcpd()
    binds = ("etc/init.d", "run")
    path = f"PATH={bindir}:/usr/sbin:/usr/bin:/sbin:/bin"

    ro = "mount --bind /proc/sys /proc/sys && mount -o bind,remount,ro /proc/sys && " if proc_sys == "ro" else ""
    pair.ct_shell(rootfs, f"{ro}{path} /etc/init.d/S40network start", binds)
    assert_works(pair, v6_via)
    pair.wait_ping(pair.node, pair.leased("eth2"))

    pidfile = rootfs / "run/udhcpc.eth2.pid"
    udhcpc = int(pidfile.read_text())
    pair.ct_shell(rootfs, f"{path} /etc/init.d/S40network stop", binds)
    _wait_ended(udhcpc)
    assert "192.0.2.10" not in pair.c("ip", "addr", "show", "dev", "eth0").stdout


def _wait_ended(pid: int) -> None:
    """Wait until ``pid`` is a zombie (its parent is no reaper) or gone; kill it if it outlives the wait."""
    def state() -> str | None:
        try:
            return Path(f"/proc/{pid}/stat").read_text().split()[2]
        except FileNotFoundError:
            return None

    try:
        wait_for(state, 5, 0.1, f"process {pid} to end", until=lambda st: st in (None, "Z"))
    except AssertionError:
        os.kill(pid, signal.SIGKILL)
        raise




def _ifupdown(dist: str, tmp: Path) -> tuple[str, str, str | None]:
    """(ifup, ifdown, what is missing) for a distribution's own tools: Debian's
    ifupdown with iproute2, Alpine's ifupdown-ng (unpacked by setup.sh) with
    busybox ``ip`` as on Alpine."""
    if dist == "debian":
        opts = f"--state-dir={tmp} --no-scripts -i /etc/network/interfaces"
        return f"ifup {opts}", f"ifdown {opts}", _missing("ifup", "ifdown", "ip", "busybox")
    bindir = tmp / "bin"
    bindir.mkdir()
    (bindir / "ip").symlink_to(shutil.which("busybox") or "busybox")
    opts = f"-l -E {IFUPDOWN_NG}/usr/libexec/ifupdown-ng -S {tmp}/ifstate -i /etc/network/interfaces"
    env = f"PATH={bindir}:/usr/sbin:/usr/bin:/sbin:/bin"
    missing = _missing("busybox") or (None if (IFUPDOWN_NG / "sbin/ifup").exists()
                                      else f"no ifupdown-ng in {IFUPDOWN_NG}: run scripts/setup.sh")
    return f"{env} {IFUPDOWN_NG}/sbin/ifup {opts}", f"{env} {IFUPDOWN_NG}/sbin/ifdown {opts}", missing


@V6_VIA
@pytest.mark.parametrize("dist", ["debian", "alpine"])
def test_interfaces_with_the_distributions_ifupdown(dist, v6_via, pair, tmp_path):
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc/network/interfaces.d").mkdir(parents=True)
    ifup, ifdown, missing = _ifupdown(dist, tmp_path)
    require(missing)
    (rootfs / "etc/network/interfaces.tail").write_text("iface dummy0 inet manual\n")
    for_distribution(dist)(rootfs).set_network(ifaces(v6_via, with_dhcp=False))
    pair.host_routes()

    pair.ct_shell(rootfs, f"{ifup} eth0 eth1", ("etc/network",))
    assert_works(pair, v6_via)
    pair.ct_shell(rootfs, f"{ifdown} eth0 eth1", ("etc/network",))
    addrs = pair.c("ip", "addr", "show").stdout
    assert "192.0.2.1" not in addrs and "203.0.113.50" not in addrs, addrs
    # Up again after down: nothing left behind makes the second ifup fail.
    pair.ct_shell(rootfs, f"{ifup} eth0 eth1", ("etc/network",))
    assert_works(pair, v6_via)


@V6_VIA
def test_networkd_files_with_systemd_networkd(v6_via, pair, tmp_path):
    """networkd as in a container: /sys read-only (so it waits for no udev),
    its /run private, and no D-Bus, so that nothing of the host's is touched."""
    require(_missing("busybox", "ip") or (None if os.path.exists(NETWORKD) else f"no {NETWORKD}"))
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    for_distribution("arch")(rootfs).set_network(ifaces(v6_via))
    pair.host_routes()
    pair.start_udhcpd()
    with pair.daemon(f"mount --bind {rootfs}/etc/systemd/network /etc/systemd/network"
                     " && mount -t tmpfs tmpfs /run/systemd && mount -o bind,remount,ro /sys"
                     f" && exec env DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent {NETWORKD}"):
        assert_works(pair, v6_via)
        pair.wait_ping(pair.node, pair.leased("eth2"))


@V6_VIA
def test_keyfiles_with_networkmanager(v6_via, pair, tmp_path):
    """NetworkManager (Debian's, unpacked by setup.sh) on a private D-Bus,
    every path of its own under tmp_path, /etc read-only and /run and
    /var/lib private: it reads the keyfiles from the rootfs and nothing
    else of the host's."""
    nm = NETWORK_MANAGER / "usr/sbin/NetworkManager"
    require(_missing("busybox", "ip", "dbus-run-session")
            or (None if nm.exists() else f"no {nm}: run scripts/setup.sh"))
    rootfs, conf = tmp_path / "rootfs", tmp_path / "nm"
    rootfs.mkdir()
    (conf / "conf.d").mkdir(parents=True)
    for_distribution("fedora")(rootfs).set_network(ifaces(v6_via))
    (conf / "nm.conf").write_text(
        "[main]\nplugins=keyfile\nno-auto-default=*\ndns=none\nrc-manager=unmanaged\nhostname-mode=none\n"
        f"[keyfile]\npath={rootfs}/etc/NetworkManager/system-connections\n")
    pair.host_routes()
    pair.start_udhcpd()
    paths = (f"--config {conf}/nm.conf --config-dir {conf}/conf.d --system-config-dir {conf}/conf.d"
             f" --intern-config {conf}/intern.conf --state-file {conf}/state --pid-file {conf}/pid")
    with pair.daemon("mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /var/lib"
                     " && mount --bind /etc /etc && mount -o bind,remount,ro /etc"
                     " && mount -o bind,remount,ro /sys && exec dbus-run-session -- sh -c"
                     " 'DBUS_SYSTEM_BUS_ADDRESS=$DBUS_SESSION_BUS_ADDRESS"
                     f" LD_LIBRARY_PATH={NETWORK_MANAGER}/usr/lib/x86_64-linux-gnu exec {nm} --debug {paths}'"):
        assert_works(pair, v6_via)
        pair.wait_ping(pair.node, pair.leased("eth2"))
