"""The node VM fixture (tests/helpers/nodevm.py): one VM booted per test
module, its osctld started with the module's ``NODE_VM_OSCTLD`` config (a
dict, if the module has one), shut down after the module's last test."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def node_vm(request, nodevm_image):
    from tests.helpers.nodevm import NodeVM

    vm = NodeVM(nodevm_image)
    try:
        vm.start()
        print(f"node VM booted in {vm.boot_seconds:.1f} s")
        vm.start_osctld(getattr(request.module, "NODE_VM_OSCTLD", None))
        yield vm
    finally:
        vm.shutdown()
