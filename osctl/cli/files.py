"""osctl ct cp: files into and out of a running container.

The daemon unpacks or packs a tar stream inside the container, as its root
(``ct.file.push``, ``ct.file.pull``); this end makes or takes that stream
through a pipe whose other end it passes, reading and writing the node's
files with osctl's own rights. What comes out of a container is the
tenant's: it is unpacked with tarfile's ``data`` filter (no path out of the
destination, no device nodes, no set-uid bits, owned by whoever runs osctl).
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import tempfile
import threading
from pathlib import Path

import click

from .common import cancel, pass_settings, progress_printer, show

# ID:PATH or POOL:ID:PATH, PATH absolute: the container's side.
INSIDE = re.compile(r"^((?:[a-z0-9][a-z0-9_.-]{0,62}:)?[a-z0-9][a-z0-9_.-]{0,62}):(/.*)$")
MAX_ID = (1 << 32) - 2


def _inside(arg: str) -> tuple[str, str] | None:
    m = INSIDE.match(arg)
    return (m.group(1), m.group(2)) if m else None


def _owned(uid: int, gid: int):
    """A tarfile filter: every member owned by ``uid``:``gid`` inside, by number."""
    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid, info.gid, info.uname, info.gname = uid, gid, "", ""
        return info
    return owned


def _pipe_call(s, cmd: str, args: dict, give: int, keep: int, mode: str, work) -> dict:
    """``cmd`` with one end of a pipe passed (``give``), while ``work``
    reads or writes the other (``keep``, opened in ``mode``) in a thread."""
    client = s.client()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            with os.fdopen(keep, mode) as f:
                work(f)
        except (OSError, tarfile.TarError) as e:  # the daemon's answer says why, if it failed
            failed.append(e)

    try:
        req = client.send(cmd, {k: v for k, v in args.items() if v is not None}, [give])
    finally:
        os.close(give)
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    try:
        res = client.wait(req, progress_printer(s))
    except KeyboardInterrupt:
        cancel(s, [req])
        raise SystemExit(130) from None
    finally:
        worker.join()
    if failed:
        raise click.ClickException(f"copying failed: {failed[0]}")
    return res


def _push(s, local: str, ref: str, path: str, recursive: bool, uid: int, gid: int) -> dict:
    src = Path(local)
    if not src.exists() and not src.is_symlink():
        raise click.BadParameter(f"{local}: no such file or directory", param_hint="SRC")
    if src.is_dir() and not src.is_symlink() and not recursive:
        raise click.BadParameter(f"{local} is a directory: give -r", param_hint="SRC")
    name = src.resolve().name if src.name in ("", ".", "..") else src.name
    r, w = os.pipe()

    def write(f) -> None:
        with tarfile.open(fileobj=f, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            tar.add(str(src), arcname=name, filter=_owned(uid, gid))

    return _pipe_call(s, "ct.file.push", {"id": ref, "path": path, "name": name}, r, w, "wb", write)


def _pull(s, ref: str, path: str, local: str, recursive: bool) -> dict:
    dest = Path(local)
    into = dest if dest.is_dir() else dest.parent
    if not into.is_dir():
        raise click.BadParameter(f"{into}: no such directory", param_hint="DST")
    staging = Path(tempfile.mkdtemp(prefix=".osctl-cp.", dir=into))
    r, w = os.pipe()

    def read(f) -> None:
        with tarfile.open(fileobj=f, mode="r|") as tar:
            tar.extractall(staging, filter="data")

    try:
        res = _pipe_call(s, "ct.file.pull", {"id": ref, "path": path, "recursive": recursive},
                         w, r, "rb", read)
        (top,) = staging.iterdir()
        target = dest / top.name if dest.is_dir() else dest
        try:
            os.replace(top, target)
        except OSError as e:
            raise click.ClickException(f"cannot put it at {target}: {e.strerror}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {**res, "local": str(target)}


@click.command("cp")
@click.argument("src")
@click.argument("dst")
@click.option("--recursive", "-r", is_flag=True, help="Copy a directory and what is in it.")
@click.option("--uid", type=click.IntRange(0, MAX_ID), default=0, show_default=True,
              help="Owner inside of what is copied in (an ID in the container).")
@click.option("--gid", type=click.IntRange(0, MAX_ID), default=0, show_default=True,
              help="Group inside of what is copied in.")
@pass_settings
def cp(s, src, dst, recursive, uid, gid):
    """Copy a file (or with -r a directory) into or out of a running container.

    One of SRC and DST is ID:PATH (or POOL:ID:PATH), PATH absolute inside
    the container; the other is a path on the node (write ./a:b for a local
    name with a colon). Inside, paths are the container's own: a symlink
    there leads where it leads in the container, never onto the node.
    Copied in, files belong to the container's root (or --uid/--gid) and
    keep their modes; into an existing directory they go under their own
    name. Copied out, they belong to whoever runs osctl, without set-uid
    bits, group or other write, or device nodes.

    \b
    Examples:
      osctl ct cp ./site.conf web1:/etc/nginx/conf.d/
      osctl ct cp -r ./www web1:/var/www --uid 33 --gid 33
      osctl ct cp web1:/var/log/nginx/error.log /tmp/web1-error.log
    """
    into, out_of = _inside(dst), _inside(src)
    if bool(into) == bool(out_of):
        raise click.UsageError("give one side as ID:/PATH (the container's) and the other as a "
                               "path on the node")
    res = _push(s, src, *into, recursive, uid, gid) if into else _pull(s, *out_of, dst, recursive)
    if s.format != "table":
        show(s, res)
