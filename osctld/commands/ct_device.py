"""Device grants of a container: list, add, delete.

Grants apply at start (devices cgroup rules and the nodes in /dev), so a
change to a running container is staged for its restart (as features are),
or made at once with ``restart``.
"""

from __future__ import annotations

from osctl.protocol import EXISTS, NOT_FOUND, OsctlError

from ..model.account import Perm
from ..model.device import DeviceGrant
from ..runtime.devices import BASE_ALLOW
from ..runtime.features import bundles
from . import Context, Seconds, Target, command
from .ct import STOP_TIMEOUT, find, reconfigure


@command("ct.device.ls", aliases=("ct.devices.ls",), target=Target("ct", "id"),
         needs=Perm.STATS)
async def ls(ctx: Context, id: str) -> list:
    """Every device the container may use, and why: base, a feature, or its own grant."""
    _, ct = find(ctx, id)
    rows = [{**g.to_dict(), "source": "base"} for g in BASE_ALLOW]
    rows += [{**g.to_dict(), "source": f"feature:{f.name}"} for f in bundles(ct.features) for g in f.devices]
    rows += [{**g.to_dict(), "source": "ct"} for g in ct.devices]
    return rows


@command("ct.device.add", aliases=("ct.devices.add",), mutating=True, target=Target("ct", "id"))
async def add(ctx: Context, id: str, type: str, major: str | int, minor: str | int, mode: str,
              path: str | None = None, restart: bool = False, timeout: Seconds = STOP_TIMEOUT) -> dict:
    """Grant a device (``path``: make its node there in the container's /dev)."""
    grant = DeviceGrant.parse(type, major, minor, mode, path)
    pstate, ct = find(ctx, id)
    if any(g.same_device(grant) for g in ct.devices):
        raise OsctlError(EXISTS, f"container {ct.id} already has a grant for {grant.rule.rsplit(' ', 1)[0]}")
    taken = [g for g in ctx.node.containers.grants(ct) if g.path == grant.path and grant.path]
    if any(not g.same_device(grant) for g in taken):
        raise OsctlError(EXISTS, f"container {ct.id} already has another device at {grant.path}")

    def change() -> None:
        ct.devices = [*ct.devices, grant]

    return await reconfigure(ctx, pstate, ct, change, restart, timeout)


@command("ct.device.del", aliases=("ct.devices.del",), mutating=True, target=Target("ct", "id"))
async def delete(ctx: Context, id: str, type: str, major: str | int, minor: str | int,
                 restart: bool = False, timeout: Seconds = STOP_TIMEOUT) -> dict:
    """Take back a device grant of the container's own."""
    probe = DeviceGrant.parse(type, major, minor, "r")
    pstate, ct = find(ctx, id)
    if not any(g.same_device(probe) for g in ct.devices):
        raise OsctlError(NOT_FOUND, f"container {ct.id} has no grant of its own for "
                                    f"{probe.rule.rsplit(' ', 1)[0]}")

    def change() -> None:
        ct.devices = [g for g in ct.devices if not g.same_device(probe)]

    return await reconfigure(ctx, pstate, ct, change, restart, timeout)
