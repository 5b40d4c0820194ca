"""Node maintenance on the three-node cluster (``cluster3``), seen from
outside: a node with two containers and a VM is emptied (the containers
sent, the VM moved live), each runs on another node with its address
answering from the router during and after; the node holds nothing and is
in maintenance; disabled, they all come back to it. What cannot move (its
evacuate setting is stop, or a hard affinity keeps it) is reported and
stays, stopped or running, and the node goes into maintenance all the same."""

from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import require
from tests.helpers.vm import have_qemu, vm_cluster_with_tiny, vm_node_config, wait_console
from tests.helpers.wait import wait_for

from .test_cluster_ha import node_state, record

pytestmark = pytest.mark.root
CTS = {"c1": "192.0.2.21", "c2": "192.0.2.22"}
VM_ADDR = "192.0.2.30"
ADDRS = [*CTS.values(), VM_ADDR]


@pytest.fixture
def cluster3_config(tmp_path) -> dict:
    return vm_node_config(tmp_path)


class Pinger:
    """Pings each address from the router until stopped: the longest time
    each went without an answer."""

    def __init__(self, router, addrs: list[str]):
        self.router, self.addrs = router, addrs
        self.last = {a: time.monotonic() for a in addrs}
        self.gap = dict.fromkeys(addrs, 0.0)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.done.is_set():
            for a in self.addrs:
                if self.router.pings(a):
                    now = time.monotonic()
                    self.gap[a] = max(self.gap[a], now - self.last[a])
                    self.last[a] = now

    def __enter__(self) -> "Pinger":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join(timeout=10)


def placed(node, keys: list[str]) -> dict[str, str]:
    return {k: (record(node, k) or {}).get("node") for k in keys}


def running_on(nodes, kind: str, id: str) -> list[str]:
    return [n.name for n in nodes
            if any(r["id"] == id and r["state"] == "running" for r in n.osctl_json(kind, "ls"))]


def test_maintenance_empties_a_node_and_disable_brings_all_back(cluster3, tinyvm_image):
    require(have_qemu())
    a, b, c = cluster3.nodes
    router = cluster3.router
    vm_cluster_with_tiny(cluster3, "vmuser", VM_ADDR)
    a.osctl("user", "new", "bob")
    for ct, addr in CTS.items():
        a.osctl("ct", "new", ct, "--user", "bob", "--template", "busybox")
        a.osctl("ct", "netif", "new", ct, "eth0")
        a.osctl("ct", "netif", "ip", "add", ct, "eth0", addr)
        a.osctl("ct", "start", ct)
    a.osctl("vm", "start", "v1")
    wait_console(a, "v1", r"/ # ", timeout=60)
    keys = ["ct/c1", "ct/c2", "vm/v1"]
    for addr in ADDRS:
        wait_for(lambda: router.pings(addr), 30, message=f"{addr} to answer on A")
    wait_for(lambda: placed(b, keys), 15, 0.3, "the records on A",
             until=lambda p: set(p.values()) == {a.name})

    with Pinger(router, ADDRS) as pinger:
        began = time.monotonic()
        out = b.osctl("-j", "cluster", "node", "maintenance", "enable", a.name)
        took = time.monotonic() - began
    res = __import__("json").loads(out.stdout)
    assert res["not_done"] == [] and len(res["done"]) == 3, res
    assert "[maintenance] evacuating" in out.stderr, out.stderr  # progress as it goes
    assert sorted(line.split(":")[0] for line in res["done"]) == keys
    print(f"evacuated 2 containers and a VM in {took:.1f} s; longest silence per address: "
          + ", ".join(f"{a_} {g:.1f} s" for a_, g in pinger.gap.items()))
    assert a.osctl_json("ct", "ls") == [] and a.osctl_json("vm", "ls") == []
    where = placed(c, keys)
    assert a.name not in where.values() and None not in where.values(), where
    for ct in CTS:
        assert running_on([b, c], "ct", ct) == [where[f"ct/{ct}"]]
    assert running_on([b, c], "vm", "v1") == [where["vm/v1"]]
    assert node_state(c, a.name) == "maintenance"
    for addr in ADDRS:
        wait_for(lambda: router.pings(addr), 10, message=f"{addr} to answer after the evacuation")
    assert pinger.gap[VM_ADDR] < 5  # moved live

    out = c.osctl("-j", "cluster", "node", "maintenance", "disable", a.name)
    res = __import__("json").loads(out.stdout)
    assert res["not_done"] == [] and len(res["done"]) == 3, res
    assert not any("moved stopped" in line for line in res["done"]), res  # the VM live again
    assert placed(b, keys) == dict.fromkeys(keys, a.name)
    assert sorted(r["id"] for r in a.osctl_json("ct", "ls") if r["state"] == "running") == ["c1", "c2"]
    assert [r["state"] for r in a.osctl_json("vm", "ls")] == ["running"]
    assert b.osctl_json("ct", "ls") == [] == c.osctl_json("ct", "ls")
    assert node_state(c, a.name) == "online"
    for addr in ADDRS:
        wait_for(lambda: router.pings(addr), 10, message=f"{addr} to answer back on A")
    assert all(r.get("evacuated_from") is None for r in b.osctl_json("cluster", "ls"))


def test_maintenance_reports_and_keeps_what_cannot_move(cluster3):
    """On A: keep (evacuate stop, running) and tied (migrate, running) in
    affinity group pair, moves (running), idle (evacuate stop, stopped).
    Enable: keep is stopped on A, tied cannot follow it anywhere (reported
    with the group's reason) and runs on, idle needs nothing, moves runs on
    another node; A is in maintenance all the same. Disable: moves comes
    back, keep starts again, idle stays stopped."""
    a, b, c = cluster3.nodes
    a.osctl("user", "new", "bob")
    a.osctl("server-group", "new", "pair", "--policy", "affinity")
    for ct in ("keep", "tied"):
        a.osctl("ct", "new", ct, "--user", "bob", "--node", a.name, "--server-group", "pair")
    for ct in ("moves", "idle"):
        a.osctl("ct", "new", ct, "--user", "bob")
    for ct in ("keep", "tied", "moves"):
        a.osctl("ct", "start", ct)
    keys = ["ct/idle", "ct/keep", "ct/moves", "ct/tied"]
    wait_for(lambda: placed(b, keys), 15, 0.3, "the records on A",
             until=lambda p: set(p.values()) == {a.name})
    for ct in ("keep", "idle"):
        a.osctl("ct", "set", "evacuate", ct, "stop")

    began = time.monotonic()
    res = __import__("json").loads(b.osctl("-j", "cluster", "node", "maintenance", "enable",
                                           a.name).stdout)
    print(f"maintenance enable with one move took {time.monotonic() - began:.1f} s")
    assert [line.split(" (")[0] for line in sorted(res["done"])] == [
        f"ct/idle: stopped on {a.name} already", f"ct/keep: stopped on {a.name}",
        f"ct/moves: on {placed(c, ['ct/moves'])['ct/moves']}"], res
    [tied] = res["not_done"]
    assert tied.startswith("ct/tied cannot move: server group pair (affinity): its members are "
                           f"on {a.name}") and tied.endswith(f"it stays on {a.name}"), tied
    assert node_state(c, a.name) == "maintenance"
    states = {r["id"]: r["state"] for r in a.osctl_json("ct", "ls")}
    assert states == {"idle": "stopped", "keep": "stopped", "tied": "running"}, states
    assert placed(c, keys)["ct/moves"] in (b.name, c.name)
    assert running_on([b, c], "ct", "moves") == [placed(c, keys)["ct/moves"]]

    res = __import__("json").loads(c.osctl("-j", "cluster", "node", "maintenance", "disable",
                                           a.name).stdout)
    assert res["not_done"] == [] and [line.split(" (")[0] for line in sorted(res["done"])] == [
        f"ct/keep: started on {a.name}", f"ct/moves: on {a.name}"], res
    states = {r["id"]: r["state"] for r in a.osctl_json("ct", "ls")}
    assert states == {"idle": "stopped", "keep": "running", "moves": "running",
                      "tied": "running"}, states
    assert node_state(c, a.name) == "online" and placed(b, keys) == dict.fromkeys(keys, a.name)
