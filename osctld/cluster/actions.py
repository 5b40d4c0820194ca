"""What the cluster's mechanism (evacuation, fencing, replication,
recovery) has this node's commands do: start, stop, move, replicate,
recover an instance.

``cluster/`` never imports a command (the commands import it), so the
mechanism gets these as an object: ``commands/cluster_ha.py`` implements
``Actions`` over the verbs (``ct send``, ``vm migrate``, ``ct replicate``
and ``vm replicate``, ``ct recover`` and ``vm recover``, the lifecycle verbs), each under the locks and with the
history those verbs keep, on one Context made for the task or loop that
asks.
"""

from __future__ import annotations

from typing import Protocol


class Actions(Protocol):
    async def start(self, kind: str, id: str) -> dict:
        """Start the instance here."""

    async def stop(self, kind: str, id: str) -> dict:
        """Stop the instance here (cleanly, with the send's stop timeout)."""

    async def move(self, kind: str, id: str, dest: str) -> dict:
        """Move the instance to the node at ``dest``: running, it runs
        there afterwards (a VM live), stopped it stays stopped."""

    async def replicate(self, kind: str, id: str, dest: str) -> dict:
        """One replica pass of the instance to ``dest`` (its ``taken``)."""

    async def drop(self, kind: str, id: str) -> None:
        """The instance's replica goes, if it has one."""

    def unrecoverable(self, kind: str, id: str) -> str | None:
        """Why the instance cannot be recovered here (no complete replica
        of it here); None if it can."""

    async def recover(self, kind: str, id: str) -> dict:
        """The staged replica of the instance here becomes the instance, started."""


def split_key(ikey: str) -> tuple[str, str]:
    """An instance key ``kind/id`` as (kind, id)."""
    kind, _, id = ikey.partition("/")
    return kind, id
