"""ZFS through libzfs_core: has its place here; its own issue brings it to life."""

from osctl.protocol import UNSUPPORTED, OsctlError

from .base import Backend


class ZfsBackend(Backend):
    name = "zfs"

    async def install(self, size=None) -> None:
        raise OsctlError(UNSUPPORTED, "the zfs backend is not available yet in this osctld: "
                                      "use --backend dir or btrfs")

    async def activate(self) -> None:
        await self.install()
