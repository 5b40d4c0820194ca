"""The socket LXC's hooks report to (``runtime/hook.py`` is the other end).

Each hook sends one JSON line (pool, ct, hook, init PID, target) and waits
for ``ok`` or ``error <why>``; the container's runtime handles it meanwhile
(the network is set up in that window). An error makes the hook exit
non-zero, and LXC aborts the start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

from .runtime.container import Containers
from .state import Registry

log = logging.getLogger(__name__)


class HookSocket:
    def __init__(self, path: Path, registry: Registry, containers: Containers):
        self.path = path
        self.registry = registry
        self.containers = containers
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        if self.path.exists():
            self.path.unlink()
        self.server = await asyncio.start_unix_server(self._client, path=str(self.path))
        os.chmod(self.path, 0o600)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            msg = json.loads(line)
            pstate = self.registry.pools.get(msg.get("pool"))
            ct = pstate.cts.get(msg.get("ct")) if pstate else None
            if ct is not None:
                await self.containers.hook(ct, str(msg.get("hook")), msg.get("pid"), msg.get("target"))
            writer.write(b"ok\n")
            await writer.drain()
        except Exception as e:
            log.warning("hook failed: %s", e)
            writer.write(("error " + str(e).replace("\n", " ") + "\n").encode())
            await writer.drain()
        finally:
            writer.close()
