"""Work inside a running container from the node: a script passed in
(``ct.runscript``), files in and out (``ct.file.push``, ``ct.file.pull``).

All of it runs in the container's own namespaces as its root, through
lxc-attach, the way ``ct.exec`` does: a path is resolved by the container's
kernel view (its mount namespace, its root), so a symlink inside to ``/etc``
is the container's ``/etc``, never the node's, and whatever is made inside
is owned by IDs of the container's own map. The daemon never opens a path
of the node for a caller either: osctl reads and writes the node's side
(a tar stream through a passed pipe), with the caller's own rights.
"""

from __future__ import annotations

import posixpath

from osctl.protocol import CONFLICT, INVALID, NOT_FOUND, OsctlError

from ..model.account import Perm
from ..model.bounds import shown
from ..model.naming import NAME_MAX, PATH_MAX
from . import Context, Target, command
from .ct import _command_line, _need_running, find

# A script passed in is staged in a private file inside, then run from an
# open descriptor with the file already removed (nothing stays behind), so
# its own #! line picks the interpreter, and sh runs one without.
STAGE_SCRIPT = 'umask 077 && f=$(mktemp) && cat > "$f" && chmod 700 "$f" && echo "$f"'
RUN_SCRIPT = 'exec 9<"$0" && rm -f "$0" && exec /proc/self/fd/9 "$@"'
STAGE_TIMEOUT = 30

# Push: a tar stream of one file or directory named $2 onto path $1: into it
# if it is a directory, else as it (unpacked beside it first, then moved).
PUSH = r'''d=$1 name=$2
if [ -d "$d" ]; then exec tar -x -f - -C "$d"; fi
p=$(dirname "$d")
[ -d "$p" ] || { echo "$p: no such directory in the container" >&2; exit 3; }
t=$(mktemp -d "$p/.osctl-cp.XXXXXX") || exit 1
if tar -x -f - -C "$t" && mv -f "$t/$name" "$d"; then rm -rf "$t"; exit 0; fi
rm -rf "$t"; exit 1'''
# Pull: path $1 as a tar stream of one member, ./NAME (a directory only with $2 = r).
PULL = r'''d=$1
[ -e "$d" ] || [ -L "$d" ] || { echo "$d: no such file or directory in the container" >&2; exit 3; }
if [ -d "$d" ] && [ "$2" != r ]; then echo "$d is a directory: give -r" >&2; exit 2; fi
cd "$(dirname "$d")" && exec tar -c -f - "./$(basename "$d")"'''
# What the scripts' exit codes mean.
CODES = {2: INVALID, 3: NOT_FOUND}


def _inside_path(path: str) -> str:
    """An absolute path inside the container, normalised (no NUL: checked)."""
    if not path.startswith("/") or len(path.encode(errors="surrogateescape")) > PATH_MAX \
            or any(len(part.encode(errors="surrogateescape")) > NAME_MAX for part in path.split("/")):
        raise OsctlError(INVALID, f"give an absolute path inside the container of at most {PATH_MAX} "
                                  f"bytes, got {shown(path)}")
    return posixpath.normpath(path)


def _one_fd(ctx: Context, verb: str) -> int:
    if len(ctx.fds) != 1:
        raise OsctlError(INVALID, f"{verb} needs one passed descriptor: the tar stream "
                                  "(osctl ct cp passes it)")
    return ctx.fds[0]


def _outcome(ct_id: str, what: str, code: int, err: bytes) -> None:
    if code != 0:
        why = err.decode(errors="replace").strip() or f"exit {code}"
        raise OsctlError(CODES.get(code, CONFLICT), f"{what} in {ct_id} failed: {why}")


@command("ct.runscript", target=Target("ct", "id"), needs=Perm.LOGIN)
async def runscript(ctx: Context, id: str, script: bytes, args: list[str] | None = None,
                    env: dict | None = None) -> dict:
    """Run a script given by the caller inside a running container (it need
    not be there), on the three passed descriptors (stdin, stdout, stderr);
    its exit code comes back, as from ``ct.exec``."""
    _, ct = find(ctx, id)
    _need_running(ct)
    if len(ctx.fds) != 3:
        raise OsctlError(INVALID, "ct.runscript needs the caller's stdin, stdout and stderr")
    if not script:
        raise OsctlError(INVALID, "the script is empty")
    argv = ["/bin/sh", "-c", RUN_SCRIPT]
    env = _command_line(argv + (args or []), env)
    lxc = ctx.node.containers.lxc
    code, out, err = await lxc.attach(ct.pool, ct.id, ["/bin/sh", "-c", STAGE_SCRIPT], None,
                                      stdin=script, timeout=STAGE_TIMEOUT)
    _outcome(ct.id, "staging the script", code, err)
    staged = out.decode(errors="surrogateescape").strip()
    code, _, _ = await lxc.attach(ct.pool, ct.id, argv + [staged, *(args or [])], ctx.fds, env)
    return {"exit_code": code}


@command("ct.file.push", target=Target("ct", "id"), needs=Perm.LOGIN)
async def push(ctx: Context, id: str, path: str, name: str) -> dict:
    """Unpack a tar stream (the passed descriptor) of one file or directory
    called ``name`` at ``path`` inside a running container, as its root
    unpacks it: owners and modes as the stream has them, into ``path`` if
    that is a directory."""
    _, ct = find(ctx, id)
    _need_running(ct)
    path = _inside_path(path)
    if name in ("", ".", "..") or "/" in name or len(name.encode(errors="surrogateescape")) > NAME_MAX:
        raise OsctlError(INVALID, f"invalid file name {shown(name)}")
    fd = _one_fd(ctx, "ct.file.push")
    code, err = await ctx.node.containers.lxc.stream(ct.pool, ct.id, ["/bin/sh", "-c", PUSH, "push",
                                                                       path, name], fd, writes=False)
    _outcome(ct.id, f"copying to {path}", code, err)
    return {"id": ct.id, "path": path}


@command("ct.file.pull", target=Target("ct", "id"), needs=Perm.LOGIN)
async def pull(ctx: Context, id: str, path: str, recursive: bool = False) -> dict:
    """Write ``path`` inside a running container, as a tar stream of one
    member (``./NAME``), to the passed descriptor; a directory only when
    ``recursive``."""
    _, ct = find(ctx, id)
    _need_running(ct)
    path = _inside_path(path)
    fd = _one_fd(ctx, "ct.file.pull")
    code, err = await ctx.node.containers.lxc.stream(
        ct.pool, ct.id, ["/bin/sh", "-c", PULL, "pull", path, "r" if recursive else ""], fd,
        writes=True)
    _outcome(ct.id, f"copying {path}", code, err)
    return {"id": ct.id, "path": path}
