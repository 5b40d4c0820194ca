"""Container features (tun, fuse, kvm, ppp, lxc, docker, keyctl): list, enable, disable.

A change to a running container is staged: saved, in force at its next
start, shown as ``pending_restart`` and planned into its group's
maintenance window, as a VM's cores are; ``restart`` restarts it into the
change now (a start that fails brings the old config back up).
"""

from __future__ import annotations

from ..model.account import Perm
from ..runtime.features import FEATURES, check_names
from . import Context, Seconds, Target, command
from .ct import STOP_TIMEOUT, find, reconfigure


@command("ct.feature.ls", target=Target("ct", "id"), needs=Perm.STATS)
async def ls(ctx: Context, id: str) -> list:
    """Every feature, whether the container has it, and what it grants."""
    _, ct = find(ctx, id)
    return [{"name": f.name, "enabled": f.name in ct.features, "description": f.description,
             "devices": [g.rule for g in f.devices], "pending_restart": ct.pending_restart}
            for f in FEATURES.values()]


async def _set(ctx: Context, id: str, names: list[str], on: bool, restart: bool, timeout: int) -> dict:
    check_names(names)
    pstate, ct = find(ctx, id)
    wanted = [n for n in FEATURES if (n in names and on) or (n in ct.features and n not in names)]
    if wanted == ct.features:  # nothing changes: no restart either
        return {**ct.public(), "restarted": False}

    def change() -> None:
        ct.features = wanted

    return await reconfigure(ctx, pstate, ct, change, restart, timeout)


@command("ct.feature.enable", mutating=True, target=Target("ct", "id"))
async def enable(ctx: Context, id: str, names: list[str], restart: bool = False,
                 timeout: Seconds = STOP_TIMEOUT) -> dict:
    """Turn features on (a running container: staged, or ``restart`` now)."""
    return await _set(ctx, id, names, True, restart, timeout)


@command("ct.feature.disable", mutating=True, target=Target("ct", "id"))
async def disable(ctx: Context, id: str, names: list[str], restart: bool = False,
                  timeout: Seconds = STOP_TIMEOUT) -> dict:
    """Turn features off (a running container: staged, or ``restart`` now)."""
    return await _set(ctx, id, names, False, restart, timeout)
