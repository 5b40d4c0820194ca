"""Wire names: one scheme for every verb, and the old names of the last
release still running the same functions (osctld/commands ALIASES)."""

from __future__ import annotations

import asyncio
import re
from types import SimpleNamespace

import pytest

from osctld.commands import ALIASES, REGISTRY, Context, load_all, resolve
from osctld.commands import ct_device, daemon, netif

load_all()

# The old names renamed in this release -> the function each ran, and
# whether it acted on a VM when given ``vm: true``.
RENAMED = {
    "ct.devices.ls": (ct_device.ls, False), "ct.devices.add": (ct_device.add, False),
    "ct.devices.del": (ct_device.delete, False),
    "netif.new": (netif.new, True), "netif.del": (netif.delete, True), "netif.ls": (netif.ls, True),
    "netif.rename": (netif.rename, True), "netif.set": (netif.set_, True),
    "netif.ip_add": (netif.ip_add, True), "netif.ip_del": (netif.ip_del, True),
    "netif.ip_ls": (netif.ip_ls, True), "netif.route_add": (netif.route_add, True),
    "netif.route_del": (netif.route_del, True), "netif.route_ls": (netif.route_ls, True),
}


def test_every_verb_follows_the_dotted_scheme():
    bad = [n for n in REGISTRY if not re.fullmatch(r"[a-z]+(\.[a-z]+)+", n)]
    assert bad == []
    assert not any(n.startswith(("netif.", "ct.devices.")) for n in REGISTRY)


@pytest.mark.parametrize("old", sorted(RENAMED))
def test_an_old_name_still_runs_the_same_function(old):
    func, by_kind = RENAMED[old]
    spec, args = resolve(old, {"id": "c1"})
    assert spec.func is func and args == {"id": "c1"} and spec.bound.get("vm", False) is False
    if by_kind:
        spec, args = resolve(old, {"id": "v1", "vm": True})
        assert spec.func is func and spec.name.startswith("vm.") and args == {"id": "v1"}
        assert spec.bound == {"vm": True} and (spec.target is None or spec.target.kind == "vm")
        assert resolve(old, {"id": "c1", "vm": False})[0].name.startswith("ct.")


def test_the_old_names_are_exactly_the_aliases():
    assert set(ALIASES) == set(RENAMED)


def test_ct_and_vm_netif_verbs_are_one_handler_with_the_kind_bound():
    ct, vm = REGISTRY["ct.netif.ip.add"], REGISTRY["vm.netif.ip.add"]
    assert ct.func is vm.func is netif.ip_add
    assert "vm" not in ct.hints and "vm" not in vm.hints
    assert (ct.target.kind, vm.target.kind) == ("ct", "vm")


def test_daemon_commands_lists_the_aliases():
    ctx = Context(node=SimpleNamespace(), op="1:1")
    listed = {c["cmd"]: c for c in asyncio.run(daemon.commands(ctx))}
    assert listed["ct.device.ls"]["aliases"] == ["ct.devices.ls"]
    assert listed["ct.netif.ip.add"]["aliases"] == ["netif.ip_add"]
    assert listed["vm.netif.ip.add"]["aliases"] == ["netif.ip_add"]
    assert listed["ct.start"]["aliases"] == []
    assert "vm" not in listed["vm.netif.ip.add"]["args"]
    assert not set(ALIASES) & set(listed)
