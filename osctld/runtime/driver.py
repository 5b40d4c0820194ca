"""One interface to containers and VMs: what a command asks of an instance.

The two drivers are the runtimes: ``Containers`` (runtime/container.py, LXC)
and ``Vms`` (runtime/vm.py, QEMU); ``Node.driver(kind)`` hands out the one of
a kind (``Container.kind`` "ct", ``VM.kind`` "vm"). A command that works on
either kind asks its driver what differs, never the instance's type. Each
driver alone changes its instances' states, by the lifecycle table
(``model/lifecycle.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from ..model.lifecycle import Event
    from ..model.netif import NetIf

Inst = TypeVar("Inst", contravariant=True)


class Driver(Protocol[Inst]):
    async def start(self, pstate, inst: Inst) -> None:
        """Start it (the table refuses unless it is stopped). A VM is marked
        online first, and back as it was if the start fails. A container's
        start that fails says why (its hooks', LXC's reason)."""

    async def stop(self, inst: Inst, timeout: int, kill: bool = False) -> None:
        """Stop it cleanly, killed after ``timeout`` seconds (at once with
        ``kill``); returns when it is stopped."""

    async def restart(self, pstate, inst: Inst, timeout: int) -> None:
        """Stop it (killed after ``timeout`` s), then start it again. A
        restart never leaves a running instance stopped by its own failed
        start: a container starts again as it ran (its staged changes undone
        where the config it ran is known) and the error says so; a VM's
        failed start is the error (its maintenance puts its old settings back)."""

    async def refresh(self, inst: Inst) -> None:
        """Take its state from LXC or QEMU as it is now."""

    def apply(self, inst: Inst, event: Event, pid: int | None = None) -> None:
        """Move it by the lifecycle table (a conflict where it may not) and
        publish the new state."""

    def keep_stopped(self, pstate, inst: Inst) -> None:
        """Its operator stops it for good: a VM is marked offline (the daemon
        would start it again at the node's next boot); a container's
        autostart is a setting of its own, left as it is."""

    def check_netif_type(self, type: str) -> None:
        """Refuse a netif type this kind cannot have (a VM's are routed only)."""

    async def netif_change(self, inst: Inst, old: NetIf | None, new: NetIf | None) -> None:
        """A netif is added (``old`` None), removed (``new`` None) or changed:
        live on a running container; on a running VM, pending until its next
        start (its tap and the guest's view are made then)."""

    async def write_netconfig(self, pstate, inst: Inst) -> None:
        """The guest's network configuration: distconfig's files in a
        container's rootfs, which its own init reads; nothing for a VM,
        which reads its interfaces from its kernel command line at each start."""
