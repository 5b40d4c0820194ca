"""``ct import-vz``: a container from an OpenVZ Legacy node, as a vzdump
archive or a private area (simfs) copied by hand.

The config is mapped by ``osctl_convert.mapping`` and the rootfs fixed by
``osctl_convert.fixups`` (docs/design-notes.md, OpenVZ Legacy import); the
container is made the way ``ct import`` makes one: all checked first (id,
user, addresses), then the dataset, the files, the fix-ups and the config,
each undone if a later step fails.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
from pathlib import Path

from osctl.protocol import INVALID, OsctlError
from osctl_convert import fixups, mapping, vzconf

from ..distconfig import DISTRIBUTIONS
from ..distconfig.rootfs import RootFS
from ..model.container import Container
from ..model.device import DeviceGrant
from ..model.limits import Limits
from ..model.netif import NetIf
from ..runtime import features
from ..proc import run_tool
from ..storage.base import run
from ..model.naming import check_name
from ..transfer.receive_verbs import ReceiveContext, receive_verb
from . import Context, Target, command, user_ref
from .ct import _limits
from .ct_send import _arg, stage
from .ct_copy import _finish, _new_dataset, _one_fd, _reserve_netifs, admit, restore_owners, stored_maps
from .instance import creating

VPS_CONF = ("./etc/vzdump/vps.conf", "etc/vzdump/vps.conf")
# What the fix-ups read: a dry run of an archive unpacks only these.
FIXUP_PATHS = ("etc", "sbin/initctl")
MAX_CONF = 1 << 20
LZO_MAGIC = b"\x89LZO"
# GNU tar reads vzdump's archives (sparse, numeric owners, ./-prefixed) and
# finds gzip or lzop compression by itself; file capabilities are xattrs.
TAR_X = ("tar", "-x", "-p", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--sparse")


def _source(fd: int) -> str:
    """``dir`` or ``archive``; a ploop private area is refused."""
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode):
        return "archive"
    if not stat.S_ISDIR(st.st_mode):
        raise OsctlError(INVALID, "give a vzdump archive or a private area directory")
    if os.path.exists(f"/proc/self/fd/{fd}/root.hdd/DiskDescriptor.xml"):
        raise OsctlError(INVALID, "a ploop private area (root.hdd): its files are in an image. "
                                  "On the OpenVZ node, 'vzctl mount CTID' and copy from VE_ROOT "
                                  "(/vz/root/CTID) instead")
    return "dir"


def _path(fd: int) -> str:
    """The passed descriptor as a path the daemon's tools can open (as root)."""
    return f"/proc/{os.getpid()}/fd/{fd}"


async def _tar(argv: list[str], fd: int, what: str, may_miss: bool = False) -> None:
    """GNU tar on the archive; ``may_miss``: members asked for and not there are no error."""
    rc, out = await run_tool(*argv, "-f", _path(fd))
    errors = [line for line in out.splitlines()
              if not (may_miss and "Not found in archive" in line) and "Exiting with failure" not in line]
    if rc != 0 and (errors or not may_miss):
        raise OsctlError(INVALID, f"{what} failed: {'; '.join(errors[-3:]) or f'exit {rc}'}")


def _read_conf(fd: int) -> str | None:
    """./etc/vzdump/vps.conf of the archive; lzop-compressed ones through lzop."""
    with open(_path(fd), "rb") as f:
        lzo = f.read(4) == LZO_MAGIC
    if lzo and not shutil.which("lzop"):
        raise OsctlError(INVALID, "the archive is lzop-compressed and lzop is not installed here")
    proc = subprocess.Popen(["lzop", "-dc", _path(fd)], stdout=subprocess.PIPE) if lzo else None
    try:
        with tarfile.open(_path(fd), "r:*") if proc is None else \
                tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                if member.name in VPS_CONF and member.isfile():
                    body = tar.extractfile(member)
                    return body.read(MAX_CONF).decode(errors="replace") if body else None
    except (tarfile.TarError, OSError, EOFError) as e:
        raise OsctlError(INVALID, f"not a readable vzdump archive: {e}") from None
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
    return None


async def _archive_conf(fd: int) -> str:
    text = await asyncio.to_thread(_read_conf, fd)
    if not text:
        raise OsctlError(INVALID, "the archive has no ./etc/vzdump/vps.conf (not a vzdump "
                                  "archive of OpenVZ?): give the config with --conf")
    return text


def _resolvers(fs: RootFS) -> list[str]:
    """The nameservers vzctl copied into the container's resolv.conf: the
    OpenVZ node's, for NAMESERVER inherit."""
    text = fs.read("etc/resolv.conf") or ""
    return re.findall(r"^\s*nameserver\s+(\S+)", text, re.M)


def _container(ctx: Context, settings: mapping.Settings, id: str, pool: str, user: str) -> Container:
    try:
        return Container(
            id=id, pool=pool, user=user, distribution=settings.distribution,
            version=settings.version, hostname=settings.hostname or id,
            dns_resolvers=settings.dns_resolvers, autostart=settings.autostart,
            autostart_priority=settings.autostart_priority,
            limits=_limits(ctx, Limits(), settings.limits), disk=settings.disk,
            netifs=[NetIf(**n) for n in settings.netifs],
            devices=[DeviceGrant.from_dict(d) for d in settings.devices],
            features=features.check_names(settings.features) if settings.features else [])
    except OsctlError as e:
        raise OsctlError(e.code, f"the OpenVZ config does not fit: {e.message}") from None


@command("ct.import.vz", mutating=True, target=Target("pool", "pool"))
async def import_vz(ctx: Context, id: str, user: str, conf: str | None = None,
                    pool: str | None = None, netif_name: str = "eth0", dry_run: bool = False) -> dict:
    """Make container ``id`` of ``user`` from an OpenVZ container: the
    descriptor passed is a vzdump archive or a private area directory,
    ``conf`` the text of its vzctl config (an archive's own
    ./etc/vzdump/vps.conf by default). ``dry_run``: the report and the
    fix-ups only, nothing made."""
    node = ctx.node
    pstate, u = node.registry.user(user_ref(user, pool))
    fd = _one_fd(ctx, "import_vz")
    kind = _source(fd)
    if conf is None:
        if kind == "dir":
            raise OsctlError(INVALID, "a private area has no config: give --conf "
                                      "(the node's /etc/vz/conf/CTID.conf)")
        conf = await _archive_conf(fd)
    keys = vzconf.parse(conf)

    def convert(fs: RootFS) -> mapping.Conversion:
        return mapping.convert(keys, id, host_resolvers=_resolvers(fs),
                               distributions=tuple(DISTRIBUTIONS), netif_name=netif_name)

    conv = convert(RootFS(Path(_path(fd)))) if kind == "dir" else \
        mapping.convert(keys, id, distributions=tuple(DISTRIBUTIONS), netif_name=netif_name)
    ct = _container(ctx, conv.settings, id, pstate.pool.name, u.name)
    backend, notes = await admit(ctx, pstate, ct)
    if dry_run:
        with tempfile.TemporaryDirectory(prefix="osctld-import-vz-") as tmp:
            if kind == "archive":
                await _tar([*TAR_X, "-C", tmp, *(f"{p}{s}" for p in ("./", "") for s in FIXUP_PATHS)],
                           fd, "reading the archive", may_miss=True)
            fs = RootFS(Path(tmp) if kind == "archive" else Path(f"/proc/self/fd/{fd}"))
            conv = convert(fs)
            changes = fixups.plan(fs, ct.distribution)
        return _result(ct, conv, changes, notes, dry_run=True)
    async with creating(ctx, pstate, ct, u, backend.quotas) as made:
        _reserve_netifs(ctx, ct)
        rootfs = await _new_dataset(pstate, ct, backend, made, backend.create)
        ctx.progress({"step": "rootfs", "message": "copying the OpenVZ container's files"})
        if kind == "archive":
            await _tar([*TAR_X, "-C", str(rootfs), "--anchored", "--exclude=./etc/vzdump",
                        "--exclude=etc/vzdump"], fd, "unpacking the archive")
        else:
            await run("cp", "-a", "--reflink=auto", f"{_path(fd)}/.", f"{rootfs}/",
                      what="copying the private area")
        fs = RootFS(rootfs)
        conv = convert(fs)  # NAMESERVER inherit: the resolvers vzctl wrote inside
        ct.dns_resolvers = conv.settings.dns_resolvers
        changes = await asyncio.to_thread(fixups.fix, fs, ct.distribution)
        await restore_owners(ctx, rootfs, (None, None), stored_maps(pstate.pool, u))
        await _finish(ctx, pstate, ct, backend, made)
    return _result(ct, conv, changes, notes, dry_run=False)


def _result(ct: Container, conv: mapping.Conversion, changes: list[fixups.Change],
            notes: list[str], dry_run: bool) -> dict:
    return {**ct.public(), "dry_run": dry_run, "report": conv.to_dict()["report"],
            "fixups": [{"path": "/" + c.path, "action": c.action, "why": c.why} for c in changes],
            "notes": notes}


@receive_verb("ct.receive.vz")
async def receive_vz(rctx: ReceiveContext, args: dict) -> dict:
    """The config stage of ``osctl-convert vz6 migrate``: an OpenVZ
    container's settings, mapped by the converter on its node (it resolved
    NAMESERVER inherit and DEVNODES there), registered staged here as
    ``ct.receive.config`` registers one from an osctld node, in the pool
    given, of the user named (made if there is none: a block of the pool's
    range). The rest of the transfer is ``ct send``'s (rsync, synced, state,
    cancel); at take-over its rootfs gets the OpenVZ fix-ups."""
    node = rctx.node
    pstate = node.registry.pool(_arg(args, "pool", str, required=False))
    ct_id = check_name("container", _arg(args, "id", str))
    user = check_name("user", _arg(args, "user", str))
    fields = {f.name for f in dataclasses.fields(mapping.Settings)}
    given = _arg(args, "settings", dict)
    if set(given) - fields:
        raise OsctlError(INVALID, f"unknown settings: {', '.join(sorted(set(given) - fields))}")
    try:
        settings = mapping.Settings(**given)
    except TypeError as e:
        raise OsctlError(INVALID, f"bad settings: {e}") from None
    if settings.distribution not in DISTRIBUTIONS:
        settings.distribution = "other"
    ctx = Context(node=node, op=f"receive:{rctx.key.name}")
    try:
        ct = _container(ctx, settings, ct_id, pstate.pool.name, user)
    except (TypeError, ValueError, KeyError) as e:
        raise OsctlError(INVALID, f"bad settings: {e}") from None
    return await stage(rctx, pstate, ct, {"name": user}, _arg(args, "size", int), origin="vz6")
