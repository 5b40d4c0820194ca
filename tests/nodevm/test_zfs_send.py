"""ct send between two zfs pools in the node VM: zfs streams through
libzfs_core, seen from outside.

Two osctld nodes in the one VM: A is the fixture's daemon (the VM's own
network namespace), B a second daemon in a network namespace of its own
with its own sshd, as tests/helpers/multinode.py makes nodes on the host;
A reaches B's sshd over a veth pair (198.51.100.0/24). Each has a zfs pool
on its own dataset of the zpool on the VM's virtual disk (tank/a, tank/b).
The container moves with its files and runs on B; A's dataset is gone; an
incremental pass sends little; a send that fails or is cancelled leaves no
dataset on B and no snapshot on A. Requests go through the agent's fast
path (``NodeVM.call``), to either daemon's socket."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from osctl.protocol import OsctlError
from tests.helpers.multinode import FORCED, RECEIVE_USER, sshd_config
from tests.helpers.node import CACHE
from tests.helpers.nodevm import GUEST_OSCTLD_DIR, GUEST_SOCKET, NodeVM

MIB = 1 << 20
A_IP, B_IP, NETNS = "198.51.100.1", "198.51.100.2", "zsb"
B_DIR = GUEST_OSCTLD_DIR / "zsb"  # removed by the VM's reset, as everything below it
B_RUN = Path("/run/osctld-zsb")
B_UNITS = "osctld-zsb sshd-zsb"
ID_BASE_A, ID_BASE_B = 200_000_000, 300_000_000
NODE_VM_OSCTLD = {"default_pool": {"id_base": ID_BASE_A}}


class Node:
    """One osctld in the VM: requests to its socket, where others send to, its zfs pool."""

    def __init__(self, vm: NodeVM, socket: str, dest: str, pool: str, dataset: str):
        self.vm, self.socket, self.dest, self.pool, self.dataset = vm, socket, dest, pool, dataset

    def call(self, verb: str, args: dict | None = None, timeout: float = 300):
        req = {**NodeVM._call_req(verb, args, timeout), "socket": self.socket}
        return NodeVM._answer(self.vm._request(req, wait=timeout + 30))

    def ct(self, name: str) -> str:
        return f"{self.pool}:{name}"

    def exec(self, name: str, script: str) -> str:
        res = self.call("ct.exec", {"id": self.ct(name), "argv": ["sh", "-c", script]})
        assert res["exit_code"] == 0, res
        return res["stdout"]

    def running_ct(self, name: str, pool: str | None = None, **opts) -> None:
        """A busybox container of user u (made again: a send's cleanup takes
        a user with its last container), in the zfs pool or ``pool``."""
        pool = pool or self.pool
        try:
            self.call("user.new", {"name": "u", "pool": pool})
        except OsctlError as e:
            if e.code != "exists":
                raise
        self.call("ct.new", {"id": name, "user": f"{pool}:u", **opts})
        self.call("ct.start", {"id": f"{pool}:{name}"})


def zfs_names(vm: NodeVM, kind: str = "filesystem") -> list[str]:
    return vm.run(f"zfs list -H -o name -t {kind} -r tank", check=True).stdout.split()


def send_snapshots(vm: NodeVM) -> list[str]:
    return [s for s in zfs_names(vm, "snapshot") if "@_send-" in s]


@pytest.fixture(scope="module")
def nodes(node_vm):
    """A and B, each with a zfs pool; B trusts A's send key."""
    vm = node_vm
    b_cfg = {"state_dir": str(B_DIR / "state"), "run_dir": str(B_RUN), "cache_dir": str(CACHE),
             "log_level": "debug", "cgroup_root": "osctl-zsb", "receive_command": FORCED,
             "lxcfs": "off", "default_pool": {"id_base": ID_BASE_B}}
    vm.write_file(str(B_DIR / "osctld.yml"), yaml.safe_dump(b_cfg))
    vm.write_file(str(B_DIR / "sshd_config"), sshd_config(
        SimpleNamespace(ip=B_IP, run_dir=B_RUN, dir=B_DIR), B_DIR / "sshd" / "host_key"))
    a = Node(vm, GUEST_SOCKET, A_IP, "za", "tank/a")
    b = Node(vm, f"{B_RUN}/osctld.sock", B_IP, "zb", "tank/b")
    try:
        vm.run_all(
            f"useradd --system --user-group --create-home --home-dir /var/lib/{RECEIVE_USER} "
            f"--shell /bin/sh --password '*' {RECEIVE_USER}",
            f"ip netns add {NETNS} && ip -n {NETNS} link set lo up && "
            f"ip link add zsa0 type veth peer name zsb0 netns {NETNS} && "
            f"ip addr add {A_IP}/24 dev zsa0 && ip link set zsa0 up && "
            f"ip -n {NETNS} addr add {B_IP}/24 dev zsb0 && ip -n {NETNS} link set zsb0 up",
            f"mkdir -p {B_DIR}/sshd /run/sshd && ssh-keygen -q -t ed25519 -N '' -f {B_DIR}/sshd/host_key",
            f"systemd-run --unit=osctld-zsb --property=Delegate=yes --property=KillMode=process "
            f"--property=StandardOutput=append:{B_DIR}/osctld.log "
            f"--property=StandardError=append:{B_DIR}/osctld.log "
            f"nsenter --net=/run/netns/{NETNS} -- {vm.venv_bin / 'osctld'} --config {B_DIR}/osctld.yml",
            f"systemd-run --unit=sshd-zsb nsenter --net=/run/netns/{NETNS} -- /usr/sbin/sshd -D -e "
            f"-f {B_DIR}/sshd_config",
            f"zpool create -f -m none tank {vm.zpool_disk}", check=True)
        for _ in range(240):  # B's daemon up
            try:
                b.call("daemon.status", timeout=10)
                break
            except OsctlError:
                time.sleep(0.5)
        for n, base in ((a, ID_BASE_A), (b, ID_BASE_B)):
            n.call("pool.install", {"name": n.pool, "backend": "zfs", "dataset": n.dataset,
                                    "id_base": base + 16 * 524288})
        b.call("receive.key.add", {"name": "a", "pubkey": a.call("send.key.gen", {"force": False})["pubkey"]})
        yield a, b
    finally:  # what the VM's reset does not: B's pool, daemon and sshd, the namespace, the user
        try:
            b.call("pool.export", {"name": b.pool, "force": True, "timeout": 5}, timeout=120)
        except OsctlError as e:
            print(f"zsb: pool export: {e}")
        vm.run(f"systemctl kill -s KILL {B_UNITS}; systemctl stop {B_UNITS}; "
               f"systemctl reset-failed {B_UNITS}; ip link del zsa0; ip netns del {NETNS}; "
               f"userdel -r {RECEIVE_USER}; rm -rf {B_RUN}")


def test_a_running_container_moves_by_zfs_streams_and_incrementals_send_little(node_vm, nodes):
    vm, (a, b) = node_vm, nodes
    a.running_ct("m1")
    a.exec("m1", "echo before > /root/f1")

    a.call("ct.send.config", {"id": a.ct("m1"), "dest": b.dest, "to_pool": b.pool})
    full = a.call("ct.send.rootfs", {"id": a.ct("m1")})["sent"]
    snaps = send_snapshots(vm)
    assert snaps == [f"{a.dataset}/ct/m1@_send-s1", f"{b.dataset}/ct/m1@_send-s1"], snaps
    assert a.call("ct.snapshot.ls", {"id": a.ct("m1")}) == []  # not the tenant's

    a.exec("m1", "echo after > /root/f2")
    inc = a.call("ct.send.sync", {"id": a.ct("m1")})["sent"]
    assert full > MIB and inc < 256 * 1024, (full, inc)  # busybox whole; then two small files
    assert send_snapshots(vm) == [f"{a.dataset}/ct/m1@_send-s2", f"{b.dataset}/ct/m1@_send-s2"]
    a.exec("m1", "echo last > /root/f3")
    a.call("ct.send.state", {"id": a.ct("m1")})
    a.call("ct.send.cleanup", {"id": a.ct("m1")})

    assert b.call("ct.show", {"id": b.ct("m1")})["state"] == "running"
    assert b.exec("m1", "cat /root/f1 /root/f2 /root/f3").split() == ["before", "after", "last"]
    names = zfs_names(vm)
    assert f"{b.dataset}/ct/m1" in names and f"{a.dataset}/ct/m1" not in names, names
    assert send_snapshots(vm) == []
    path = b.call("pool.show", {"name": b.pool})["path"]
    assert vm.run(f"findmnt -n -o SOURCE {path}/ct/m1").stdout.strip() == f"{b.dataset}/ct/m1"


def test_a_whole_send_of_a_small_container(node_vm, nodes):
    """The figure the report quotes: ct send of a running busybox container
    (with a dataset of its own), every stage. The two pools are at other
    paths: the dataset is mounted inside from where it lands on B."""
    vm, (a, b) = node_vm, nodes
    a.running_ct("w1")
    a.call("ct.dataset.new", {"id": a.ct("w1"), "name": "data", "quota": "32M"})
    a.exec("w1", "echo kept > /data/f")
    t0 = time.monotonic()
    a.call("ct.send", {"id": a.ct("w1"), "dest": b.dest, "to_pool": b.pool})
    print(f"\nct send (running busybox, zfs to zfs, every stage, node VM under tcg): "
          f"{time.monotonic() - t0:.1f} s")
    assert b.call("ct.show", {"id": b.ct("w1")})["state"] == "running"
    assert f"{a.dataset}/ct/w1" not in zfs_names(vm)
    assert b.exec("w1", "cat /data/f") == "kept\n"
    assert [d["name"] for d in b.call("ct.dataset.ls", {"id": b.ct("w1")})] == ["data"]


def test_a_failed_or_cancelled_send_leaves_no_dataset_there_and_no_snapshot_here(node_vm, nodes):
    vm, (a, b) = node_vm, nodes
    a.running_ct("f1")
    # 256 KiB more than B holds already: the full stream (a MiB or two) does not fit.
    vm.run(f"zfs set quota=$(( $(zfs get -Hp -o value used {b.dataset}/ct) + 262144 )) "
           f"{b.dataset}/ct", check=True)
    try:
        with pytest.raises(OsctlError) as e:
            a.call("ct.send", {"id": a.ct("f1"), "dest": b.dest, "to_pool": b.pool})
    finally:
        vm.run(f"zfs set quota=none {b.dataset}/ct", check=True)
    assert "zfs receive" in e.value.message, e.value.message
    assert f"{b.dataset}/ct/f1" not in zfs_names(vm)
    assert all(c["id"] != "f1" for c in b.call("ct.ls"))
    shown = a.call("ct.show", {"id": a.ct("f1")})
    assert (shown["state"], shown["send_log"]) == ("running", None)
    assert send_snapshots(vm) == []

    a.call("ct.send.config", {"id": a.ct("f1"), "dest": b.dest, "to_pool": b.pool})
    a.call("ct.send.rootfs", {"id": a.ct("f1")})
    assert f"{b.dataset}/ct/f1" in zfs_names(vm)
    a.call("ct.send.cancel", {"id": a.ct("f1")})
    assert f"{b.dataset}/ct/f1" not in zfs_names(vm)
    assert send_snapshots(vm) == []
    assert a.call("ct.show", {"id": a.ct("f1")})["state"] == "running"


def test_from_a_dir_pool_rsync_writes_into_the_containers_own_dataset(node_vm, nodes):
    """Mixed pools keep rsync; on the zfs end the rootfs is in the
    container's own dataset, not a plain directory of the pool's."""
    vm, (a, b) = node_vm, nodes
    a.running_ct("d1", pool="default")
    a.call("ct.exec", {"id": "default:d1", "argv": ["sh", "-c", "echo dir > /root/from"]})
    a.call("ct.send", {"id": "default:d1", "dest": b.dest, "to_pool": b.pool})
    assert b.exec("d1", "cat /root/from") == "dir\n"
    rootfs = b.call("ct.show", {"id": b.ct("d1")})["rootfs"]
    assert vm.run(f"findmnt -n -o SOURCE -T {rootfs}").stdout.strip() == f"{b.dataset}/ct/d1"


def test_the_cli_says_what_a_pass_sent(node_vm, nodes):
    """osctl ct send sync -j: the bytes of the pass (the one CLI call here)."""
    vm, (a, b) = node_vm, nodes
    a.running_ct("c1")
    a.call("ct.send.config", {"id": a.ct("c1"), "dest": b.dest, "to_pool": b.pool})
    a.call("ct.send.rootfs", {"id": a.ct("c1")})
    shown = vm.osctl("ct", "send", "sync", a.ct("c1"), json=True)
    assert 0 < shown["sent"] < 256 * 1024, shown
    a.call("ct.send.cancel", {"id": a.ct("c1")})

