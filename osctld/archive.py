"""A container as one file: what ``ct export`` writes and ``ct import`` reads.

The file is one POSIX tar, compressed whole (gzip, zstd) or not:

- ``metadata.json`` first: the format version, the container's config,
  its user's (name, maps, quota) and where it came from; how its rootfs's
  owners are stored (``shifted``: the maps of a chown pool, else None:
  as the container sees them, which is how idmapped pools store them);
- then ``rootfs/...``: the tree, as GNU tar writes it with numeric owners,
  xattrs (file capabilities too) and ACLs.

A plain tar rather than the backend's stream (``btrfs send``): any pool
reads it (a btrfs container imports into a dir pool), ``tar`` lists and
unpacks it by hand, and it holds only the files, not a filesystem's
history. The metadata goes first so an import reads it, and refuses
what it cannot take, before anything is made: it reads the head of the
file, then the whole file again to unpack, so the input must be a file
(seekable), not a pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import stat
import tarfile
import tempfile
import time
from pathlib import Path
from typing import AsyncIterator, Callable

from osctl.protocol import CANCELLED, INTERNAL, INVALID, OsctlError
from osctl.units import format_size

FORMAT = 1
METADATA = "metadata.json"
ROOTFS = "rootfs"
# What a metadata document may weigh: a config is a few KiB.
MAX_METADATA = 1 << 20
COMPRESSIONS = ("zstd", "gzip", "none")
# GNU tar's flag for each, reading and writing.
TAR_COMPRESSION = {"zstd": ("--zstd",), "gzip": ("--gzip",), "none": ()}
# How each starts (a tar's "ustar" magic is at offset 257).
MAGIC = ((b"\x28\xb5\x2f\xfd", "zstd"), (b"\x1f\x8b", "gzip"))
# Owners by number (the IDs are the container's), xattrs of every namespace
# (security.capability, trusted.*), ACLs; no atime/ctime headers per file.
TAR_FLAGS = ("--format=posix", "--pax-option=delete=atime,delete=ctime", "--numeric-owner",
             "--xattrs", "--xattrs-include=*", "--acls")
# Reading a tree that changes (a running container copied live): a file
# that changed or went meanwhile is no error (GNU tar then exits 1).
TAR_LIVE = ("--ignore-failed-read", "--warning=no-file-changed", "--warning=no-file-removed")
PROGRESS_EVERY = 2.0  # seconds between progress reports


def compression_of(name: str) -> str:
    if name not in COMPRESSIONS:
        raise OsctlError(INVALID, f"unknown compression {name!r}: use {', '.join(COMPRESSIONS)}")
    return name


def check_metadata(meta: object) -> dict:
    """The metadata of an export this osctld can import, or ``invalid``."""
    if not isinstance(meta, dict) or meta.get("kind") != "ct":
        raise OsctlError(INVALID, "not a container export of osctl (no container metadata)")
    if meta.get("format") != FORMAT:
        raise OsctlError(INVALID, f"export format {meta.get('format')!r}: this osctld reads "
                                  f"format {FORMAT}")
    for key in ("container", "user"):
        if not isinstance(meta.get(key), dict):
            raise OsctlError(INVALID, f"export metadata lacks its {key}")
    return meta


# --- writing --------------------------------------------------------------------------


async def write(out: int, meta: dict, rootfs: Path, compression: str,
                progress: Callable[[dict], None], live: bool = False) -> int:
    """Write the archive of ``rootfs`` (``live``: changing as it is read)
    with ``meta`` to descriptor ``out``; returns the bytes written (where
    ``out`` is a file). Progress is the size of the file so far."""
    with tempfile.TemporaryDirectory(prefix="osctld-export-") as tmp:
        (Path(tmp) / METADATA).write_text(json.dumps(meta, indent=1) + "\n")
        argv = ("tar", "-c", "-f", "-", *TAR_FLAGS, *TAR_COMPRESSION[compression],
                *(TAR_LIVE if live else ()), "-C", tmp, METADATA,
                # ./x -> rootfs/x, hard links' targets too, never a symlink's.
                "--transform", rf"s,^\.,{ROOTFS},S", "-C", str(rootfs), ".")
        async with _watched(progress, "written", lambda: _size(out)):
            await _tar(argv, stdin=None, stdout=out, live=live)
    return _size(out)


def _size(fd: int) -> int:
    st = os.fstat(fd)
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


# --- reading --------------------------------------------------------------------------


def input_file(fd: int) -> tuple[str, int]:
    """The compression and size of the archive at ``fd`` (a file), or ``invalid``."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise OsctlError(INVALID, "an import reads a file (it reads it twice: its metadata "
                                  "first), not a pipe or a terminal")
    head = os.pread(fd, 512, 0)
    for magic, name in MAGIC:
        if head.startswith(magic):
            return name, st.st_size
    if head[257:262] == b"ustar":
        return "none", st.st_size
    raise OsctlError(INVALID, "not a container export of osctl (neither tar, gzip nor zstd)")


def _reopened(fd: int) -> int:
    """A descriptor of the same file with an offset of its own, at 0."""
    return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)


async def read_metadata(fd: int, compression: str) -> dict:
    """The archive's first member, which must be its metadata; reads only
    the head of the file."""
    src = _reopened(fd)
    try:
        if compression == "none":
            return await asyncio.to_thread(_first_member, os.fdopen(src, "rb", closefd=False))
        proc = await asyncio.create_subprocess_exec(
            compression, "-dc", stdin=src, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL)
        try:
            data = await proc.stdout.read(MAX_METADATA + 64 * 1024)  # type: ignore[union-attr]
        finally:
            if proc.returncode is None:
                proc.kill()
            # Drained to its end, not only waited for: a stdout left unread
            # (its transport paused on a full buffer) never sees the EOF, and
            # wait() then waits for that pipe for ever (a CI run hung so).
            await proc.communicate()
        return await asyncio.to_thread(_first_member, io.BytesIO(data))
    finally:
        os.close(src)


def _first_member(f) -> dict:
    try:
        with tarfile.open(fileobj=f, mode="r|") as tar:
            member = tar.next()
            if member is None or member.name != METADATA or not member.isfile() \
                    or member.size > MAX_METADATA:
                raise OsctlError(INVALID, f"not a container export of osctl (its first member "
                                          f"is not {METADATA})")
            body = tar.extractfile(member)
            return check_metadata(json.loads(body.read()))  # type: ignore[union-attr]
    except (tarfile.TarError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OsctlError(INVALID, f"not a readable container export: {e}") from None


async def unpack(fd: int, compression: str, size: int, rootfs: Path,
                 progress: Callable[[dict], None]) -> None:
    """Unpack the archive's rootfs into the (empty) dataset ``rootfs``, as
    root, owners and modes as stored."""
    src = _reopened(fd)
    try:
        argv = ("tar", "-x", "-f", "-", "-p", *TAR_FLAGS, *TAR_COMPRESSION[compression],
                "-C", str(rootfs), "--transform", rf"s,^{ROOTFS},.,S", ROOTFS)
        async with _watched(progress, f"of {format_size(size)} read", lambda: _offset(src)):
            await _tar(argv, stdin=src, stdout=None)
    finally:
        os.close(src)


def _offset(fd: int) -> int:
    return os.lseek(fd, 0, os.SEEK_CUR)


# --- both ways --------------------------------------------------------------------------


async def _tar(argv: tuple[str, ...], stdin: int | None, stdout: int | None,
               live: bool = False) -> None:
    """Run GNU tar to its end (see ``_reap``); its failure as ``_failure`` says."""
    proc = await _spawn(argv, stdin, stdout)
    err = (await _reap(proc))[0]
    if _failed(proc, live):
        raise _failure(proc.returncode or 0, err, unpacking=stdin is not None)


def _failed(proc: asyncio.subprocess.Process, live: bool) -> bool:
    return proc.returncode not in ((0, 1) if live else (0,))


async def _spawn(argv: tuple[str, ...], stdin: int | None,
                 stdout: int | None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *argv, stdin=stdin if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=stdout if stdout is not None else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)


async def _reap(*procs: asyncio.subprocess.Process) -> list[str]:
    """Wait for every process to end; their stderr. Cancelled, they are
    killed and reaped first, so that a rollback never races one still at
    work on what it is about to remove."""
    try:
        outs = await asyncio.gather(*(p.communicate() for p in procs))
    except BaseException:
        for p in procs:
            if p.returncode is None:
                p.kill()
        await asyncio.shield(asyncio.gather(*(p.wait() for p in procs)))
        raise
    return [err.decode(errors="replace").strip() for _, err in outs]


def _failure(rc: int, text: str, unpacking: bool) -> OsctlError:
    why = f"tar failed: {'; '.join(text.splitlines()[-3:]) or f'exit {rc}'}"
    if unpacking:  # what it read is no archive, or is cut short
        return OsctlError(INVALID, why)
    if rc == -signal.SIGPIPE or "status 141" in text or "Broken pipe" in text:
        return OsctlError(CANCELLED, f"the archive's reader went away ({why})")
    return OsctlError(INTERNAL, why)


async def copy_tree(src: Path, dst: Path, progress: Callable[[dict], None],
                    live: bool = False) -> None:
    """Copy tree ``src`` (``live``: changing as it is read) into the empty
    directory ``dst`` as an export and an import would (owners, xattrs,
    ACLs, hard links), through a pipe between two tars; progress is what
    the first has written into it."""
    r, w = os.pipe()
    try:
        reader = await _spawn(("tar", "-c", "-f", "-", *TAR_FLAGS, *(TAR_LIVE if live else ()),
                               "-C", str(src), "."), None, w)
        try:
            writer = await _spawn(("tar", "-x", "-f", "-", "-p", *TAR_FLAGS, "-C", str(dst)),
                                  r, None)
        except BaseException:
            await _reap(reader)  # it ends on the closed pipe
            raise
    finally:
        os.close(r)
        os.close(w)
    async with _watched(progress, "copied", lambda: _written(reader.pid)):
        errs = await _reap(reader, writer)
    for proc, err, tolerant in ((writer, errs[1], False), (reader, errs[0], live)):
        if _failed(proc, tolerant):  # the writer's error first: it says why
            raise _failure(proc.returncode or 0, err, unpacking=False)


def _written(pid: int) -> int:
    """Bytes process ``pid`` has written so far (0 once it has gone)."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@contextlib.asynccontextmanager
async def _watched(progress: Callable[[dict], None], what: str,
                   done: Callable[[], int]) -> AsyncIterator[None]:
    """Report ``done()`` bytes and the rate every few seconds while the body runs."""
    t0 = time.monotonic()

    async def report() -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY)
            n, secs = done(), time.monotonic() - t0
            progress({"step": "rootfs", "bytes": n,
                      "message": f"{format_size(n)} {what}, {format_size(n / secs)}/s"})

    task = asyncio.create_task(report())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
