"""ZFS: each container a dataset, each template a dataset whose snapshot new
containers clone; the disk quota is ``refquota``.

A pool is a dataset ``D`` (``--dataset POOL/PATH`` on an existing zpool, or
a zpool osctld makes on a file: ``--image FILE --size S``) mounted at the
pool's path. Below it:

- ``D/ct/<id>`` is container ``<id>``, mounted at ``<path>/ct/<id>``, its
  rootfs the subdirectory ``rootfs``: the dataset's root (and ``.zfs``,
  which gives every snapshot's files to whoever reaches it) stays out of
  the tenant's tree. Its subdatasets (``ct dataset``) are ``D/ct/<id>/<name>``,
  mounted at ``<path>/ct/<id>/datasets/<name>`` and bound inside.
- ``D/tpl/<key>`` is a built template (its tree at the dataset's root),
  snapshotted once as ``@base``; a new container is a clone of that
  snapshot, whose top-level entries are then moved into ``rootfs/``
  (renames: nothing is copied).
- everything else (configs, logs, VM disks) is plain files in ``D``.

Every dataset has ``mountpoint=legacy`` and osctld mounts it itself where
the layout says, so that the zpool's own mount logic (``zfs mount -a`` at
boot) never puts a tenant's data elsewhere; a name that starts with a dot
(a template build) is stored with ``_`` for it (names osctld gives start
with a letter or digit).

Create, clone, snapshot, destroy, rename and rollback go through
libzfs_core (``lzc.py``); reading and setting properties through the
``zfs`` command, which the binding has nothing for (NotImplementedError:
docs/design-notes.md). OpenZFS 2.2 or later maps a rootfs with idmapped
mounts (``pool show``: ``idmap``, ``zfs_version``), so nothing is chowned.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from pathlib import Path
from typing import Callable

from osctl.protocol import CONFLICT, EXISTS, INTERNAL, INVALID, NOT_FOUND, OsctlError

from ..proc import run_tool
from ..model.naming import check_name
from ..undo import Undo
from . import lzc
from .base import PRIVATE_DIRS, SUBDATASETS, Backend, Snapshot, remove_if_empty, run

# The snapshot of a template that new containers are clones of.
ORIGIN = "base"
# A send's snapshots (``ct send``, ``ct replicate``) are ``@_send-<name>``:
# no ``ct snapshot`` name starts with "_", so they are never a tenant's.
SEND_PREFIX = "_send-"
# lzc_send: records as large as the dataset's, small files inline, blocks
# as compressed on disk (not re-inflated for the wire). str, not bytes: the
# binding looks them up in a dict of str (names are bytes everywhere else).
SEND_FLAGS = ["large_blocks", "embedded_data", "compress"]
VERSION_FILE = Path("/sys/module/zfs/version")


def _stored(part: str) -> str:
    return "_" + part[1:] if part.startswith(".") else part


def _shown(part: str) -> str:
    return "." + part[1:] if part.startswith("_") else part


def zfs_version() -> str | None:
    """The loaded module's OpenZFS version (2.3.2-2~bpo12+2), None without it."""
    try:
        return VERSION_FILE.read_text().strip()
    except OSError:
        return None


async def call_through(what: str, fn, *args, **kw):
    """``call`` for a send or a receive, which ends when its descriptor
    does: cancelled, it waits for the thread to end (the other side of the
    pipe closes with the SSH session) before its caller undoes what it
    made, and re-raises the cancellation."""
    running = asyncio.ensure_future(call(what, fn, *args, **kw))
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await running
        raise


async def call(what: str, fn, *args, **kw):
    """A libzfs_core call in a thread (it blocks on the ioctl); its errors
    (``ZFSError`` and kin, each with an errno) become OsctlError."""
    try:
        return await asyncio.to_thread(fn, *args, **kw)
    except OsctlError:
        raise
    except Exception as e:
        if type(e).__module__.startswith(lzc.NAME):
            raise OsctlError(INTERNAL, f"{what} failed: {type(e).__name__}: {e}") from None
        raise


class ZfsBackend(Backend):
    name = "zfs"
    quotas = True  # refquota
    named_snapshots = True
    subdatasets = True
    send_stream = "zfs"

    @property
    def lzc(self):
        return lzc.load()

    @property
    def dataset(self) -> str:
        if not self.pool.dataset:
            raise OsctlError(INVALID, f"zfs pool {self.pool.name} has no dataset: give "
                                      "--dataset POOL/PATH")
        return self.pool.dataset

    @property
    def zpool(self) -> str:
        return self.dataset.split("/")[0]

    # --- where a path's data is ---------------------------------------------------------

    def place(self, path: Path) -> tuple[str, Path, str] | None:
        """(dataset, where it is mounted, the tree's subdirectory in it: ""
        for the whole) of a backend path; None for a plain directory of ``D``."""
        try:
            rel = Path(path).relative_to(self.pool.path).parts
        except ValueError:
            return None
        if len(rel) == 2 and rel[0] in ("ct", "tpl"):
            return f"{self.dataset}/{rel[0]}/{_stored(rel[1])}", Path(path), ""
        if len(rel) == 3 and rel[0] == "ct":
            return f"{self.dataset}/ct/{_stored(rel[1])}", Path(path).parent, rel[2]
        return None

    def mountpoint(self, dataset: str) -> Path | None:
        """Where the layout mounts ``dataset`` (None: nowhere, ``D/ct`` and ``D/tpl``)."""
        if dataset == self.dataset:
            return self.pool.path
        parts = dataset[len(self.dataset) + 1:].split("/")
        if len(parts) == 2 and parts[0] in ("ct", "tpl"):
            return self.pool.path / parts[0] / _shown(parts[1])
        if len(parts) == 3 and parts[0] == "ct":
            return self.pool.path / "ct" / _shown(parts[1]) / SUBDATASETS / parts[2]
        return None

    def ct_dataset(self, rootfs: Path) -> str:
        place = self.place(rootfs)
        if place is None:
            raise OsctlError(INVALID, f"{rootfs} is no container's rootfs in pool {self.pool.name}")
        return place[0]

    # --- the zfs command: what libzfs_core cannot do ------------------------------------

    async def exists(self, dataset: str) -> bool:
        return await call(f"looking for {dataset}", self.lzc.lzc_exists, dataset.encode())

    async def tree(self, dataset: str, kind: str = "filesystem") -> list[str]:
        """``dataset`` and every dataset (or snapshot) below it, parents first."""
        out = await run("zfs", "list", "-H", "-o", "name", "-t", kind, "-r", dataset,
                        what=f"zfs list {dataset}")
        return [n for n in out.splitlines() if n]

    async def get(self, dataset: str, prop: str) -> str:
        return await run("zfs", "get", "-Hp", "-o", "value", prop, dataset,
                         what=f"zfs get {prop} {dataset}")

    async def set(self, dataset: str, prop: str, value: str) -> None:
        await run("zfs", "set", f"{prop}={value}", dataset, what=f"zfs set {prop} {dataset}")

    async def put_back(self, dataset: str, prop: str, value: str | None) -> None:
        """A property as it was: set locally to ``value``, or (None) inherited."""
        if value is None:
            await run("zfs", "inherit", prop, dataset, what=f"zfs inherit {prop} {dataset}")
        else:
            await self.set(dataset, prop, value)

    # --- mounting ------------------------------------------------------------------------

    async def mount(self, dataset: str) -> None:
        where = self.mountpoint(dataset)
        if where is None or os.path.ismount(where):
            return
        where.mkdir(parents=True, exist_ok=True)
        await run("mount", "-t", "zfs", dataset, str(where), what=f"mounting {dataset}")

    async def umount_tree(self, dataset: str) -> None:
        """Unmount ``dataset`` and its children, deepest first."""
        for name in reversed(await self.tree(dataset)):
            where = self.mountpoint(name)
            if where is not None and os.path.ismount(where):
                await run("umount", str(where), what=f"unmounting {where}")

    async def new_dataset(self, dataset: str, **props: int | bytes) -> None:
        """A dataset osctld mounts itself (``mountpoint=legacy``)."""
        kprops = {b"mountpoint": b"legacy", **{k.encode(): v for k, v in props.items()}}
        await call(f"creating {dataset}", self.lzc.lzc_create, dataset.encode(), props=kprops)

    # --- the pool ------------------------------------------------------------------------

    async def install(self, size: int | None, undo: Undo) -> None:
        """On a new zpool on the image, or on a zpool that is imported; the
        dataset made if missing. ``undo`` takes back only what this made: a
        zpool it created is destroyed, a dataset it created too; one that
        was there is never destroyed (its mountpoint is put back, and the
        ``ct``, ``tpl`` datasets and empty directories made in it go)."""
        pool, ds = self.pool, self.dataset
        lzc.load()  # a node without ZFS: unsupported, before anything is made
        if pool.image is not None:
            await self.new_image(size, undo, "zpool", "create", "-m", "none", self.zpool)
            undo.push(self.destroy_zpool)
        elif not await self._imported():
            raise OsctlError(INVALID, f"there is no zpool {self.zpool} (zpool list): create or "
                                      "import it first, or give --image FILE --size SIZE")
        if await self.exists(ds):
            mountpoint, source = (await run("zfs", "get", "-Hp", "-o", "value,source", "mountpoint", ds,
                                            what=f"zfs get mountpoint {ds}")).split("\t")
            if mountpoint != "legacy":
                await self.set(ds, "mountpoint", "legacy")  # unmounts it where it was
                undo.push(self.put_back, ds, "mountpoint", mountpoint if source == "local" else None)
        else:
            parent = ds.rpartition("/")[0]
            if parent and not await self.exists(parent):
                raise OsctlError(INVALID, f"there is no zfs dataset {parent} to make {ds} in")
            await self.new_dataset(ds)
            undo.push(self.destroy_dataset, ds)
        for made in await self.new_parents():
            undo.push(self.destroy_dataset, made)
        self.new_path(undo)
        undo.push(self.umount_tree, ds)
        undo.push(self.remove_empty_dirs)
        await self.activate()
        if (pool.conf_dir / "pool.yml").exists():
            raise OsctlError(EXISTS, f"dataset {ds} holds a pool already: use 'osctl pool import "
                                     f"{pool.path} --dataset {ds}'")

    async def activate(self) -> None:
        pool = self.pool
        if pool.image is not None and not await self._imported():
            if not pool.image.is_file():
                raise OsctlError(INVALID, f"zfs image {pool.image} is no file")
            await run("zpool", "import", "-d", str(pool.image), self.zpool,
                      what=f"zpool import {self.zpool}")
        if not await self.exists(self.dataset):
            raise OsctlError(INVALID, f"there is no zfs dataset {self.dataset}: give an existing "
                                      "one, or import its zpool")
        await self.mount(self.dataset)
        await super().activate()  # ct/, tpl/ ...: root's alone
        await self.new_parents()
        for name in await self.tree(self.dataset):
            await self.mount(name)

    async def new_parents(self) -> list[str]:
        """``D/ct`` and ``D/tpl`` (mounted nowhere), those missing: the ones made."""
        made = []
        for sub in (f"{self.dataset}/ct", f"{self.dataset}/tpl"):
            if not await self.exists(sub):
                await self.new_dataset(sub, canmount=0)
                made.append(sub)
        return made

    async def destroy_zpool(self) -> None:
        await run("zpool", "destroy", "-f", self.zpool, what=f"zpool destroy {self.zpool}")

    def remove_empty_dirs(self) -> None:
        """The directories ``activate`` made in a dataset, if nothing was put in them."""
        for sub in PRIVATE_DIRS:
            remove_if_empty(self.pool.path / sub)

    async def _imported(self) -> bool:
        rc, _ = await run_tool("zpool", "list", "-H", "-o", "name", self.zpool)
        return rc == 0

    async def deactivate(self) -> None:
        """Unmount it all; a zpool that is the pool's alone (an image, or a
        dataset that is the zpool's root) is exported, so another node can import it."""
        if not await self._imported():
            return
        if await self.exists(self.dataset):
            await self.umount_tree(self.dataset)
        if self.pool.image is not None or "/" not in self.dataset:
            await run("zpool", "export", self.zpool, what=f"zpool export {self.zpool}")

    async def uninstall(self) -> None:
        """An image pool's data is its image; a dataset below the zpool's
        root is destroyed with all in it; a whole zpool is left exported."""
        if self.pool.image is not None:
            self.pool.image.unlink(missing_ok=True)
        elif "/" in self.dataset:
            await self.destroy_dataset(self.dataset)
        remove_if_empty(self.pool.path)

    def describe(self) -> dict:
        return {"dataset": self.dataset, "zfs_version": zfs_version()}

    # --- datasets ------------------------------------------------------------------------

    async def create(self, path: Path) -> None:
        place = self.place(path)
        if place is None:
            return await super().create(path)
        dataset, where, sub = place
        if not await self.exists(dataset):
            await self.new_dataset(dataset)
            await self.mount(dataset)
        if sub:
            (where / sub).mkdir()

    async def clone(self, src: Path, dst: Path) -> None:
        """A template into a new container: a clone of its ``@base``
        snapshot (taken at the first clone), the tree moved into the rootfs
        subdirectory by renames. Anything else is copied (``ct reinstall``
        builds its new rootfs beside the old one, in the same dataset)."""
        s, d = self.place(src), self.place(dst)
        if s is None or d is None or s[2] or await self.exists(d[0]):
            return await super().clone(src, dst)
        origin = f"{s[0]}@{ORIGIN}"
        if not await self.exists(origin):
            await call(f"snapshotting {s[0]}", self.lzc.lzc_snapshot, [origin.encode()])
        await call(f"cloning {origin}", self.lzc.lzc_clone, d[0].encode(), origin.encode(),
                   props={b"mountpoint": b"legacy"})
        await self.mount(d[0])
        if d[2]:
            await asyncio.to_thread(_into_subdir, d[1], d[2])

    async def rename(self, src: Path, dst: Path) -> None:
        """A whole dataset (``ct rename``, a template's build) is renamed in
        ZFS and mounted at its new place; a directory in one is renamed."""
        s, d = self.place(src), self.place(dst)
        if s is None or d is None or s[2] or d[2] or not await self.exists(s[0]):
            return await super().rename(src, dst)
        await self.umount_tree(s[0])
        try:
            await call(f"renaming {s[0]}", self.lzc.lzc_rename, s[0].encode(), d[0].encode())
        except BaseException:
            await self.mount_tree(s[0])
            raise
        remove_if_empty(src)
        await self.mount_tree(d[0])

    async def mount_tree(self, dataset: str) -> None:
        for name in await self.tree(dataset):
            await self.mount(name)

    async def destroy(self, path: Path) -> None:
        """A container's rootfs or a template: its dataset, with its
        snapshots and subdatasets. A directory in one (``rootfs.old``): removed."""
        place = self.place(path)
        if place is None or place[2] not in ("", "rootfs"):
            return await super().destroy(path)
        dataset, where, _ = place
        if await self.exists(dataset):
            await self.destroy_dataset(dataset)
        await asyncio.to_thread(shutil.rmtree, where, True)

    async def destroy_dataset(self, dataset: str) -> None:
        """``zfs destroy -r``: unmounted, its snapshots, then its
        filesystems deepest first (lzc_destroy removes one at a time)."""
        await self.umount_tree(dataset)
        snaps = await self.tree(dataset, "snapshot")
        if snaps:
            await call(f"destroying the snapshots of {dataset}", self.lzc.lzc_destroy_snaps,
                       [s.encode() for s in snaps], False)
        for name in reversed(await self.tree(dataset)):
            await call(f"destroying {name}", self.lzc.lzc_destroy, name.encode())

    async def destroy_ct(self, rootfs: Path) -> None:
        await self.destroy(rootfs)  # its snapshots and subdatasets go with the dataset

    async def set_quota(self, path: Path, size: int | None) -> None:
        """``refquota``: what the dataset itself refers to (shared blocks of
        the template's snapshot count, its own snapshots do not); ``df``
        inside shows it as the size. Refused below what it holds already."""
        dataset = self.ct_dataset(path)
        if size is not None:
            used = int(await self.get(dataset, "referenced"))
            if size < used:
                raise OsctlError(CONFLICT, f"disk quota {size} is below what {path.parent.name} "
                                           f"holds already ({used} bytes)")
        await self.set(dataset, "refquota", str(size) if size else "none")

    # --- a container's named snapshots: its dataset's and its subdatasets' ---------------

    async def snap_new(self, rootfs: Path, name: str) -> None:
        """One atomic snapshot of the container's dataset and its subdatasets."""
        names = [f"{d}@{name}".encode() for d in await self.tree(self.ct_dataset(rootfs))]
        await call(f"snapshot {name}", self.lzc.lzc_snapshot, names)

    async def snap_list(self, rootfs: Path) -> list[Snapshot]:
        """The tenant's snapshots (a send's are not listed)."""
        return [s for s in await self._snaps(rootfs) if not s.name.startswith(SEND_PREFIX)]

    async def _snaps(self, rootfs: Path) -> list[Snapshot]:
        dataset = self.ct_dataset(rootfs)
        out = await run("zfs", "list", "-Hp", "-t", "snapshot", "-d", "1", "-s", "createtxg",
                        "-o", "name,creation,used", dataset, what=f"zfs list {dataset}")
        snaps = []
        for line in out.splitlines():
            full, created, used = line.split("\t")
            snaps.append(Snapshot(full.split("@", 1)[1], float(created), int(used)))
        return snaps

    async def snap_del(self, rootfs: Path, name: str) -> None:
        snaps = [s for s in await self.tree(self.ct_dataset(rootfs), "snapshot")
                 if s.endswith(f"@{name}")]
        await call(f"destroying snapshot {name}", self.lzc.lzc_destroy_snaps,
                   [s.encode() for s in snaps], False)

    async def snap_rollback(self, rootfs: Path, name: str) -> None:
        """ZFS rolls a dataset back to its latest snapshot only: with later
        ones it is refused, naming them (``zfs rollback -r`` would destroy them)."""
        names = [s.name for s in await self._snaps(rootfs)]
        if name not in names or name.startswith(SEND_PREFIX):
            raise OsctlError(NOT_FOUND, f"no snapshot {name!r}")
        later = names[names.index(name) + 1:]
        if any(n.startswith(SEND_PREFIX) for n in later):
            raise OsctlError(CONFLICT, f"{rootfs.parent.name} is being sent or replicated since "
                                       f"snapshot {name}: cancel that first (ct send cancel)")
        if later:
            raise OsctlError(CONFLICT, f"snapshot {name} is not the latest: zfs rolls back to the "
                                       f"latest only; delete {', '.join(later)} first")
        for d in await self.tree(self.ct_dataset(rootfs)):
            snap = f"{d}@{name}"
            if await self.exists(snap):  # a subdataset made since has none: it stays
                await call(f"rolling {d} back", self.lzc.lzc_rollback_to, d.encode(), snap.encode())

    # --- a container's subdatasets (ct dataset) ------------------------------------------

    async def subdataset_new(self, rootfs: Path, name: str, quota: int | None) -> Path:
        """``D/ct/<id>/<name>`` mounted beside the rootfs, its root the
        container's root's (idmapped: uid 0 on disk); where it is mounted."""
        dataset = f"{self.ct_dataset(rootfs)}/{name}"
        if await self.exists(dataset):
            raise OsctlError(EXISTS, f"dataset {name} exists")
        await self.new_dataset(dataset, **({"refquota": quota} if quota else {}))
        try:
            await self.mount(dataset)
        except BaseException:
            await self.destroy_dataset(dataset)
            raise
        return self.subdataset_path(rootfs, name)

    async def subdataset_list(self, rootfs: Path) -> list[dict]:
        dataset = self.ct_dataset(rootfs)
        out = await run("zfs", "list", "-Hp", "-d", "1", "-t", "filesystem",
                        "-o", "name,used,refquota", dataset, what=f"zfs list {dataset}")
        rows = []
        for line in out.splitlines():
            full, used, quota = line.split("\t")
            if full != dataset:
                name = full.rsplit("/", 1)[1]
                rows.append({"name": name, "used": int(used), "quota": int(quota) or None,
                             "path": str(self.subdataset_path(rootfs, name))})
        return rows

    # --- send and receive: a container's datasets as zfs streams --------------------------
    # A pass (``ct send``'s rootfs, sync, state) is one atomic snapshot
    # ``@_send-<name>`` of the container's dataset and its subdatasets, sent
    # as one zfs stream each, in that order, on one descriptor: incremental
    # from the last pass's snapshot where the dataset has it, full where it
    # is new. The destination receives them into its own layout with
    # lzc_receive (each reads its stream to its END record, so the next
    # follows on the same descriptor); both ends keep the last snapshot as
    # the next pass's base and drop the one before.

    def _send_snap(self, dataset: str, name: str) -> str:
        return f"{dataset}@{SEND_PREFIX}{name}"

    def _datasets(self, rootfs: Path, rels: list[str]) -> list[str]:
        top = self.ct_dataset(rootfs)
        return [f"{top}/{rel}" if rel else top for rel in rels]

    async def send_snapshot(self, rootfs: Path, name: str, parent: str | None) -> list[list]:
        """Snapshot the container's datasets for a pass; what it will send:
        ``[relative name ("" the container's), incremental]`` each, in order."""
        top = self.ct_dataset(rootfs)
        tree = await self.tree(top)
        await self.send_drop(rootfs, name)  # left by a pass the daemon did not live through
        await call(f"snapshotting {top} to send it", self.lzc.lzc_snapshot,
                   [self._send_snap(d, name).encode() for d in tree])
        return [[d[len(top) + 1:],
                 parent is not None and await self.exists(self._send_snap(d, parent))]
                for d in tree]

    def _pass_snaps(self, rootfs: Path, name: str, parent: str | None,
                    plan: list[list]) -> list[tuple[bytes, bytes | None]]:
        """Each dataset's snapshot of the pass and its base (None: sent whole)."""
        return [(self._send_snap(d, name).encode(),
                 self._send_snap(d, parent).encode() if incremental and parent else None)
                for d, (_, incremental) in zip(self._datasets(rootfs, [p[0] for p in plan]), plan)]

    async def send_streams(self, rootfs: Path, name: str, parent: str | None, plan: list[list],
                           fd: int) -> None:
        """Write the pass's streams to ``fd`` (left open)."""
        lzc_send = self.lzc.lzc_send
        streams = self._pass_snaps(rootfs, name, parent, plan)

        def send() -> None:
            for snap, base in streams:
                lzc_send(snap, base, fd, flags=SEND_FLAGS)
        await call_through(f"zfs send {streams[0][0].decode()}", send)

    async def send_size(self, rootfs: Path, name: str, parent: str | None, plan: list[list]) -> int:
        """What the pass's streams weigh (libzfs_core's estimate, compressed)."""
        total = 0
        for snap, base in self._pass_snaps(rootfs, name, parent, plan):
            total += await call(f"sizing the stream of {snap.decode()}", self.lzc.lzc_send_space,
                                snap, base, SEND_FLAGS)
        return total

    async def receive_streams(self, rootfs: Path, name: str, parent: str | None,
                              plan: list[list], fd: int, saved: Callable[[], None] | None = None) -> None:
        """Receive a pass's streams from ``fd`` into the container's dataset
        and subdatasets (not mounted until ``received``). A failure takes
        back what this pass made, also one of ``saved`` (the send log says
        the pass, once all arrived): the last pass's snapshots, the base of
        a retry, go only after it, and so does a subdataset the source no
        longer has."""
        if not all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str)
                   and isinstance(p[1], bool) for p in plan):
            raise OsctlError(INVALID, "datasets: [name, incremental] pairs")
        rels = [check_name("dataset", rel) if rel else rel for rel, _ in plan]
        if not plan or plan[0] != ["", parent is not None]:
            raise OsctlError(INVALID, "a zfs pass begins with the container's own dataset")
        top = self.ct_dataset(rootfs)
        if parent is None and await self.exists(top):
            raise OsctlError(CONFLICT, f"dataset {top} exists here: not received over it")
        # What each receive may make (a new dataset, or the snapshot received
        # into an old one), noted before it runs: one that ended as the pass
        # was cancelled is taken back too.
        made: list[str] = []
        try:
            for ds, (rel, incremental) in zip(self._datasets(rootfs, rels), plan):
                snap = self._send_snap(ds, name)
                if not incremental and rel and await self.exists(ds):
                    await self.destroy_dataset(ds)  # made anew on the source since
                made.append(snap if incremental else ds)
                # force: rolled back to the base first, should anything have touched it
                await call_through(f"zfs receive {snap}", self.lzc.lzc_receive, snap.encode(), fd,
                                   force=incremental)
            if saved is not None:
                saved()
        except BaseException:
            for what in reversed(made):
                if not await self.exists(what):
                    continue
                if "@" in what:
                    await call(f"destroying {what}", self.lzc.lzc_destroy_snaps, [what.encode()], False)
                else:
                    await self.destroy_dataset(what)
            raise
        wanted = set(self._datasets(rootfs, rels))
        for ds in reversed(await self.tree(top)):
            if ds not in wanted:
                await self.destroy_dataset(ds)
        if parent is not None:
            await self.send_drop(rootfs, parent)

    async def send_drop(self, rootfs: Path, name: str | None = None) -> None:
        """A pass's snapshots (``name`` None: every pass's) of the container's datasets."""
        try:
            top = self.ct_dataset(rootfs)
        except OsctlError:
            return
        if not await self.exists(top):
            return
        mark = f"@{SEND_PREFIX}{name}" if name else f"@{SEND_PREFIX}"
        snaps = [s for s in await self.tree(top, "snapshot")
                 if (s.endswith(mark) if name else mark in s)]
        if snaps:
            await call(f"destroying the send snapshots of {top}", self.lzc.lzc_destroy_snaps,
                       [s.encode() for s in snaps], False)

    async def received(self, rootfs: Path, name: str) -> None:
        """The received datasets become the container's: the last pass's
        snapshots go, and they are mounted where the layout says."""
        await self.send_drop(rootfs, name)
        await self.mount_tree(self.ct_dataset(rootfs))

    async def subdataset_del(self, rootfs: Path, name: str) -> None:
        dataset = f"{self.ct_dataset(rootfs)}/{name}"
        if not await self.exists(dataset):
            raise OsctlError(NOT_FOUND, f"no dataset {name}")
        await self.destroy_dataset(dataset)
        remove_if_empty(self.subdataset_path(rootfs, name))


def _into_subdir(root: Path, sub: str) -> None:
    """Every entry of a fresh clone's root moved into ``root/sub``, which
    gets the root's owner and mode; the root becomes root's alone."""
    st = root.stat()
    entries = [e for e in root.iterdir() if e.name != ".zfs"]
    target = root / sub
    target.mkdir()
    os.chown(target, st.st_uid, st.st_gid)
    os.chmod(target, st.st_mode & 0o7777)
    for entry in entries:
        os.rename(entry, target / entry.name)
    os.chown(root, 0, 0)
    os.chmod(root, 0o700)
