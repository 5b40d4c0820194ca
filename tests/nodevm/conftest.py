"""The node VM fixtures (tests/helpers/nodevm.py). The VM boots once for the
whole session (``booted_node_vm``: a boot under tcg is a minute); each test
module gets ``node_vm``: that VM with a fresh osctld started with the
module's ``NODE_VM_OSCTLD`` config (a dict, if the module has one), after
its ``NODE_VM_BEFORE_OSCTLD`` shell commands (if any: what that config
needs, e.g. a zpool for a zfs default pool), and
after the module's last test ``NodeVM.reset`` puts the VM back as it
booted. Its docstring is the rule: a module may leave what osctld made
(pools, users, containers, running or not), files under GUEST_OSCTLD_DIR
and zpools; anything else it makes in the VM, it removes. A reset that
cannot clean up fails the module's last test rather than the next
module's first."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def booted_node_vm(nodevm_image):
    from tests.helpers.nodevm import NodeVM

    vm = NodeVM(nodevm_image)
    try:
        vm.start()
        print(f"node VM booted in {vm.boot_seconds:.1f} s")
        yield vm
    finally:
        vm.shutdown()


@pytest.fixture(scope="module")
def node_vm(request, booted_node_vm):
    vm = booted_node_vm
    try:
        before = getattr(request.module, "NODE_VM_BEFORE_OSCTLD", None)
        if before:
            vm.run(before, check=True)
        vm.start_osctld(getattr(request.module, "NODE_VM_OSCTLD", None))
        yield vm
    finally:
        vm.reset()
