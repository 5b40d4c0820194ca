"""Several test nodes on one provider network, for moving servers between them.

Each node is a TestNode (its own network namespace and osctld) with its own
sshd in that namespace (own host key, the receive user's keys from the file
its osctld generates), so one node's ``ct send`` reaches the other's daemon
the way it does on real nodes. A fourth namespace is the provider's router:
a bridge the nodes' uplinks hang on, with the nodes on 198.51.100.0/24 and
the public ranges (192.0.2.0/24, 203.0.113.0/24) on-link there. Each node
answers ARP for the addresses it routes (proxy ARP on its uplink), so the
router reaches a container on whichever node runs it, and finds it on the
new node once it moved (its neighbour entries are kept short for that).
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Callable

from .node import ROOT, TestNode
from .wait import wait_for

NET = ipaddress.ip_network("198.51.100.0/24")
ROUTER_IP = "198.51.100.1"
PUBLIC = ("192.0.2.0/24", "203.0.113.0/24")
SSHD = "/usr/sbin/sshd"
RECEIVE_USER = "osctld-recv"
# The forced command as the receive user runs it: the checkout's file with
# the system Python (the test's venv may sit where that user cannot read).
FORCED = ["/usr/bin/python3", "-I", str(ROOT / "osctld" / "transfer" / "forced.py")]


def missing() -> str | None:
    """What a multinode test lacks on this machine, if anything."""
    if not Path(SSHD).exists():
        return "no sshd (bash scripts/setup.sh installs openssh-server)"
    if subprocess.run(["id", RECEIVE_USER], capture_output=True).returncode != 0:
        return f"no user {RECEIVE_USER} (bash scripts/setup.sh creates it)"
    return None


def sysctl(ns: str, *settings: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", *settings], check=True)


class Router:
    """The provider's router: a namespace with a bridge the nodes hang on."""

    def __init__(self) -> None:
        self.name = f"or{uuid.uuid4().hex[:8]}"

    def start(self) -> None:
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        for cmd in (["link", "set", "lo", "up"],
                    ["link", "add", "br0", "type", "bridge"],
                    ["link", "set", "br0", "up"],
                    ["addr", "add", f"{ROUTER_IP}/{NET.prefixlen}", "dev", "br0"],
                    *(["route", "add", p, "dev", "br0"] for p in PUBLIC)):
            subprocess.run(["ip", "-n", self.name, *cmd], check=True)
        # A moved address must be looked up again soon: entries go stale
        # in half a second, and are checked by broadcast at once.
        sysctl(self.name, "net.ipv4.neigh.br0.base_reachable_time_ms=500",
               "net.ipv4.neigh.br0.delay_first_probe_time=0", "net.ipv4.neigh.br0.ucast_solicit=0",
               "net.ipv4.neigh.br0.retrans_time_ms=100")

    def plug(self, node: TestNode, ip: str) -> None:
        """The node's uplink (``uplink``, address ``ip``) on the bridge."""
        port = f"v{node.name[2:]}"
        subprocess.run(["ip", "-n", self.name, "link", "add", port, "type", "veth", "peer", "name",
                        "uplink", "netns", node.name], check=True)
        subprocess.run(["ip", "-n", self.name, "link", "set", port, "master", "br0", "up"], check=True)
        for cmd in (["addr", "add", f"{ip}/{NET.prefixlen}", "dev", "uplink"],
                    ["link", "set", "uplink", "up"]):
            subprocess.run(["ip", "-n", node.name, *cmd], check=True)
        sysctl(node.name, "net.ipv4.ip_forward=1", "net.ipv4.conf.uplink.proxy_arp=1",
               "net.ipv4.neigh.uplink.proxy_delay=0")

    def exec(self, *argv: str, check: bool = False, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], check=check,
                              capture_output=True, text=True, **kw)

    def pings(self, addr: str) -> bool:
        return self.exec("busybox", "ping", "-c", "1", "-W", "1", addr).returncode == 0

    def cleanup(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


class Node(TestNode):
    """A TestNode with an address on the provider network and an sshd there."""

    def __init__(self, ip: str, config: dict | None = None):
        super().__init__(config={"receive_command": FORCED, **(config or {})})
        self.ip = ip
        self.sshd: subprocess.Popen | None = None

    @property
    def dest(self) -> str:
        """What another node sends to."""
        return self.ip

    def start_sshd(self) -> None:
        d = self.dir / "sshd"
        d.mkdir(parents=True, exist_ok=True)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation
        key = d / "host_key"
        if not key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        cfg = d / "sshd_config"
        cfg.write_text(sshd_config(self, key))
        log = open(d / "sshd.log", "ab")
        self.sshd = subprocess.Popen([*self.netns_argv(), SSHD, "-D", "-e", "-f", str(cfg)],
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        wait_for(lambda: b"Server listening" in (d / "sshd.log").read_bytes(), 10,
                 message=lambda: f"sshd of {self.name}: {(d / 'sshd.log').read_text()}")

    def log_tail(self, n: int = 40) -> str:
        sshd_log = self.dir / "sshd" / "sshd.log"
        tail = sshd_log.read_text(errors="replace").splitlines()[-n:] if sshd_log.exists() else []
        return "\n".join([super().log_tail(n), f"--- sshd: {sshd_log}", *tail])

    def cleanup(self) -> None:
        if self.sshd is not None and self.sshd.poll() is None:
            self.sshd.send_signal(signal.SIGTERM)
            self.sshd.wait(timeout=10)
        super().cleanup()


def sshd_config(node: Node, host_key: Path) -> str:
    """The set-up's block for the receive user (scripts/sshd_osctld.conf),
    on a node of its own: its address, its host key, its osctld's
    authorized_keys; nobody else may log in. StrictModes off: the test
    directory is under /var/tmp (1777)."""
    block = (ROOT / "scripts" / "sshd_osctld.conf").read_text().replace(
        "/run/osctld/receive/authorized_keys", str(node.run_dir / "receive" / "authorized_keys"))
    return "\n".join([
        f"ListenAddress {node.ip}", f"HostKey {host_key}", f"PidFile {node.dir / 'sshd' / 'pid'}",
        "UsePAM no", "StrictModes no", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "PermitRootLogin no", f"AllowUsers {RECEIVE_USER}",
        "AuthorizedKeysFile none", block,
    ])


def subvolumes(node: TestNode, part: str, pool: str = "bt") -> list[str]:
    """The paths of the btrfs subvolumes of ``node``'s ``pool`` with ``part`` in them."""
    path = node.osctl_json("pool", "show", pool)["path"]
    out = subprocess.run(["btrfs", "subvolume", "list", path], capture_output=True, text=True,
                         check=True).stdout
    return [line.split(" path ", 1)[1] for line in out.splitlines() if part in line]


class Cluster:
    """``count`` nodes and their router, started; ``trust`` lets one send to another."""

    def __init__(self, count: int = 2, config: dict | None = None):
        self.router = Router()
        self.nodes = [Node(str(NET[10 + i]), config) for i in range(count)]

    def start(self, before_daemons: Callable[[], None] | None = None) -> "Cluster":
        """The router, the nodes on it, then (after ``before_daemons``, which
        finds the network up: etcd members) their daemons and sshds."""
        self.router.start()
        for n in self.nodes:
            n.make_netns()
            self.router.plug(n, n.ip)
        if before_daemons is not None:
            before_daemons()
        for n in self.nodes:
            n.start()
            n.start_sshd()
            n.osctl("send", "key", "gen")
        return self

    def trust(self, src: Node, dst: Node, name: str | None = None, *opts: str) -> str:
        """``dst`` authorizes ``src``'s send key as ``name`` (with ``opts``)."""
        name = name or src.name
        pub = src.osctl("send", "key", "show").stdout
        dst.osctl("receive", "authorized-keys", "add", name, *opts, input=pub)
        return name

    def cleanup(self) -> None:
        for n in self.nodes:
            n.cleanup()
        self.router.cleanup()


def btrfs_pool(node: TestNode, name: str = "bt", size: str = "3G") -> str:
    """A btrfs pool on a loop image in the node's directory (the node's
    cleanup unmounts it)."""
    node.osctl("pool", "install", name, "--backend", "btrfs",
               "--image", str(node.dir / f"{name}.img"), "--size", size,
               "--id-base", str(node.id_base + 32 * 524288))
    return name


