"""The two drivers behind one interface, driven without LXC or QEMU: what
each does with a start, a stop by its operator and a netif change."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace as NS

import pytest

from osctl.protocol import UNSUPPORTED, OsctlError
from osctld.model.container import Container
from osctld.model.lifecycle import State
from osctld.model.netif import BRIDGE, ROUTED, NetIf
from osctld.model.vm import VM
from osctld.runtime.container import Containers
from osctld.runtime.vm import Vms


class Saved:
    """A pool state that records what was saved."""

    def __init__(self):
        self.saved: list[bool] = []  # the online mark, at each save

    def save_vm(self, vm: VM) -> None:
        self.saved.append(vm.online)


def vm() -> VM:
    return VM(id="v1", pool="p", user="u", template="debian", version="12", cores=1,
              memory=1 << 30, disk=1 << 30)


def vms(net=None) -> Vms:
    return Vms(policy=None, run_dir="/nonexistent", net=net, on_state=lambda v: None,
               cgroups=NS(apply_groups=lambda *a: None))


def test_a_vm_start_that_fails_puts_its_online_mark_back():
    async def no_taps(v):
        raise OsctlError(UNSUPPORTED, "no taps here")
    pstate, v = Saved(), vm()
    with pytest.raises(OsctlError, match="no taps here"):
        asyncio.run(vms(NS(vm_up=no_taps)).start(pstate, v))
    assert (v.online, pstate.saved) == (False, [True, False])


def test_a_vm_start_the_table_refuses_marks_nothing():
    pstate, v = Saved(), vm()
    v.state = State.STAGED
    with pytest.raises(OsctlError, match="VM v1 is staged: cannot start"):
        asyncio.run(vms().start(pstate, v))
    assert (v.online, pstate.saved) == (False, [])


def test_stopped_by_its_operator_a_vm_is_offline_a_container_as_it_was():
    pstate, v = Saved(), vm()
    v.online = True
    vms().keep_stopped(pstate, v)
    assert (v.online, pstate.saved) == (False, [False])
    ct = Container(id="c1", pool="p", user="u", distribution="busybox", version="1", autostart=True)
    Containers(None, None, None, None, None, None, None, None, None, net=None).keep_stopped(None, ct)
    assert ct.autostart


def test_a_netif_change_is_pending_on_a_running_vm_and_nothing_on_a_stopped_container():
    v, n = vm(), NetIf(name="eth0", type=ROUTED)
    v.state = State.RUNNING
    asyncio.run(vms().netif_change(v, None, n))
    assert v.net_pending and v.pending_restart
    ct = Container(id="c1", pool="p", user="u", distribution="busybox", version="1")
    # Stopped: no network work at all (there is no network here to do it).
    cts = Containers(None, None, None, None, None, None, None, None, None, net=None)
    asyncio.run(cts.netif_change(ct, None, n))


def test_vm_netifs_are_routed_only():
    vms().check_netif_type(ROUTED)
    with pytest.raises(OsctlError) as e:
        vms().check_netif_type(BRIDGE)
    assert e.value.code == UNSUPPORTED
    Containers(None, None, None, None, None, None, None, None, None, net=None).check_netif_type(BRIDGE)
