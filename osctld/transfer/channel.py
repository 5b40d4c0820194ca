"""The sending side: this node's send key, and calls of another node's
receive verbs over SSH.

``call`` runs ``ssh`` as the receive user of the destination with this
node's key (``osctl send key gen``): sshd there runs the forced command,
which hands the call to that daemon (``transfer/forced.py``). A stream (a
descriptor: the read end of ``btrfs send``) is ssh's stdin, its progress
what ssh has read of it; the reply is the last line of ssh's stdout. Cancelled, the ssh process is killed: the receiving daemon sees its
session end and cancels the verb there (rolling back).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from osctl.protocol import BUSY, DENIED, EXISTS, INTERNAL, INVALID, NOT_FOUND, OsctlError
from osctl_convert import migrate

from ..proc import finish, run_tool

if TYPE_CHECKING:
    from ..node import Node

CONNECT_TIMEOUT = 10


def key_path(node: Node) -> Path:
    return node.config.send_dir / "key"


def public_key(node: Node) -> str:
    """This node's public send key, to add on the nodes it sends to."""
    try:
        return (key_path(node).with_suffix(".pub")).read_text().strip()
    except FileNotFoundError:
        raise OsctlError(NOT_FOUND, "this node has no send key: osctl send key gen") from None


async def generate_key(node: Node, force: bool = False) -> str:
    """A new ed25519 send key (the old one replaced only if ``force``)."""
    key = key_path(node)
    if key.exists() and not force:
        raise OsctlError(EXISTS, "this node has a send key already: --force replaces it")
    key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = key.with_name("key.new")
    for p in (tmp, tmp.with_suffix(".new.pub")):
        p.unlink(missing_ok=True)
    rc, out = await run_tool("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                             f"osctld@{os.uname().nodename}", "-f", str(tmp))
    if rc != 0:
        raise OsctlError(INTERNAL, f"ssh-keygen failed: {out.strip()}")
    os.replace(tmp.with_suffix(".new.pub"), key.with_suffix(".pub"))
    os.replace(tmp, key)
    return public_key(node)


def split_dest(dest: str) -> tuple[str, str]:
    """``host`` or ``host:port`` ([v6]:port) as (host, port), read as
    ``osctl-convert vz6 migrate`` reads them."""
    try:
        return migrate.split_dest(dest)
    except ValueError as e:
        raise OsctlError(INVALID, str(e)) from None


def ssh_base(node: Node, port: str) -> list[str]:
    """ssh and its options as this node's osctld runs it, up to the host:
    what ``call`` runs, and rsync's remote shell (``--rsh``)."""
    key = key_path(node)
    if not key.exists():
        raise OsctlError(NOT_FOUND, "this node has no send key: osctl send key gen")
    user = node.config.receive_user or "osctld-recv"
    return ["ssh", "-F", "none", "-T", "-i", str(key), "-p", port, "-l", user,
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=accept-new",
            "-o", f"UserKnownHostsFile={node.config.send_dir / 'known_hosts'}",
            "-o", f"ConnectTimeout={CONNECT_TIMEOUT}", "-o", "ServerAliveInterval=15"]


def ssh_argv(node: Node, dest: str, command: str) -> list[str]:
    host, port = split_dest(dest)
    return [*ssh_base(node, port), "--", host, command]


def read_so_far(pid: int) -> int | None:
    """Bytes process ``pid`` has read so far (``rchar``): how much of its
    stdin ssh has taken, give or take the destination's few replies."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


async def _watch(pid: int, progress: Callable[[int], None], every: float = 0.5) -> None:
    while True:
        await asyncio.sleep(every)
        done = read_so_far(pid)
        if done is not None:
            progress(done)


def parse_reply(dest: str, rc: int, out: bytes, err: bytes) -> dict:
    """The destination's reply (the last JSON line of ``out``), or its error
    raised; ssh's own complaints are in ``err``."""
    lines = [ln for ln in out.decode(errors="replace").splitlines() if ln.startswith("{")]
    try:
        reply = json.loads(lines[-1]) if lines else None
    except ValueError:
        reply = None
    why = [ln for ln in err.decode(errors="replace").strip().splitlines()
           if not ln.startswith("{")]
    if not isinstance(reply, dict):
        # ssh's own failure: the key refused, or no way there (busy: try again).
        last = why[-1] if why else f"ssh exited {rc}"
        code = DENIED if "Permission denied" in last else BUSY
        raise OsctlError(code, f"{dest}: {last}")
    if "error" in reply:
        e = OsctlError.from_wire(reply["error"])
        raise OsctlError(e.code, f"{dest}: {e.message}", e.details)
    return reply.get("ok") or {}


async def call(node: Node, dest: str, verb: str, args: dict, *, stdin: int | None = None,
               progress: Callable[[int], None] | None = None) -> dict:
    """Call receive verb ``verb`` of the node at ``dest`` with ``args``,
    feeding it ``stdin`` (a descriptor read to its end, left open) if given;
    its reply, or its error (the destination's code, the message prefixed
    by ``dest``)."""
    argv = ssh_argv(node, dest, f"{verb} {json.dumps(args, separators=(',', ':'))}")
    # The stream is ssh's own stdin: no copy through this process (a Python
    # pump took a 1 GiB btrfs stream from 200 to 35 MB/s); its progress is
    # what ssh has read of it.
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL if stdin is None else stdin,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    watch = asyncio.ensure_future(_watch(proc.pid, progress)) if stdin is not None and progress else None
    try:
        out, err = await finish(proc)
    finally:
        if watch is not None:
            watch.cancel()
    return parse_reply(dest, proc.returncode or 0, out, err)
