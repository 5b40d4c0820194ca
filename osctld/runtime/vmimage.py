"""A VM's files in its pool: kernel, initramfs, command line and disk.

A VM boots its kernel directly (QEMU ``-kernel``), so the template's kernel
and initramfs are copied into ``<pool>/vm/<id>/`` beside the disk: the pool
alone is enough to run the VM, on this node or after an import elsewhere.
The disk is a sparse raw file; a template with a root filesystem gets an
ext4 made from it (``mkfs.ext4 -d``: no loop device, no mount), set up
first (``prepare_guest``) to grow to its disk at each boot (systemd-growfs:
``vm set disk`` grows the disk, the next boot the filesystem) and with the
root's SSH keys. A stopped VM's password is written into that filesystem
with debugfs (``set_password``): the host neither mounts a tenant's
filesystem (its kernel would parse whatever the tenant wrote there) nor
runs any of its programs.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from osctl.protocol import INTERNAL, INVALID, OsctlError

from ..distconfig.rootfs import RootFS
from ..storage.base import run

KERNEL, INITRD, CMDLINE, ROOTFS = "vmlinuz", "initrd.img", "cmdline", "rootfs"


@dataclass
class VmFiles:
    dir: Path

    @property
    def disk(self) -> Path:
        return self.dir / "disk.raw"

    @property
    def kernel(self) -> Path:
        return self.dir / KERNEL

    @property
    def initrd(self) -> Path:
        return self.dir / INITRD

    @property
    def cmdline(self) -> str:
        return (self.dir / CMDLINE).read_text().strip()

    def grow_offline(self, size: int) -> None:
        """Grow the sparse disk file of a stopped VM."""
        os.truncate(self.disk, size)

    async def install(self, image: Path, size: int,
                      customize: Callable[[Path], None]) -> None:
        """Copy the built template ``image`` in and make the disk of ``size`` bytes.

        ``customize`` gets a staging copy of the template's root filesystem
        (hostname, DNS, network) before the filesystem is made from it.
        """
        for name in (KERNEL, INITRD, CMDLINE):
            await asyncio.to_thread(shutil.copyfile, image / name, self.dir / name)
        with open(self.disk, "wb") as f:
            f.truncate(size)
        if not (image / ROOTFS).is_dir():
            return
        staging = self.dir / ".rootfs"
        try:
            await run("cp", "-a", "--reflink=auto", str(image / ROOTFS), str(staging),
                      what="staging the VM's root filesystem")
            customize(staging)
            await run("mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(staging), str(self.disk),
                      what="making the VM's root filesystem")
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)

    async def set_password(self, user: str, password: str) -> None:
        """``user``'s password in the stopped VM's /etc/shadow (SHA-512 crypt,
        made on the host), the file's mode and owners kept."""
        shadow = await asyncio.to_thread(_debugfs, self.disk, "cat /etc/shadow")
        crypted = (await asyncio.to_thread(_tool, ["openssl", "passwd", "-6", "-stdin"],
                                           password.encode())).strip()
        lines, found = [], False
        for line in shadow.splitlines():
            fields = line.split(":")
            if fields[0] == user and len(fields) > 2:
                fields[1], found = crypted, True
            lines.append(":".join(fields))
        if not found:
            raise OsctlError(INVALID, f"the VM has no user {user!r} in its /etc/shadow")
        stat = await asyncio.to_thread(_debugfs, self.disk, "stat /etc/shadow")
        mode, uid, gid = (re.search(pattern, stat) for pattern in
                          (r"Mode:\s+(\d+)", r"User:\s+(\d+)", r"Group:\s+(\d+)"))
        if not (mode and uid and gid):
            raise OsctlError(INTERNAL, "cannot read the mode and owners of the VM's /etc/shadow")
        with tempfile.NamedTemporaryFile("w", prefix="osctld-shadow-") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write("\n".join(lines) + "\n")
            f.flush()
            await asyncio.to_thread(_debugfs, self.disk, "\n".join([
                "rm /etc/shadow", f"write {f.name} /etc/shadow",
                f"sif /etc/shadow mode 0100{mode.group(1)[-3:]}",
                f"sif /etc/shadow uid {uid.group(1)}", f"sif /etc/shadow gid {gid.group(1)}"]),
                write=True)
        if await asyncio.to_thread(_debugfs, self.disk, "cat /etc/shadow") != "\n".join(lines) + "\n":
            raise OsctlError(INTERNAL, "debugfs did not write the VM's /etc/shadow")


def _tool(argv: list[str], stdin: bytes | None = None) -> str:
    p = subprocess.run(argv, input=stdin, capture_output=True, timeout=60)
    if p.returncode != 0:
        raise OsctlError(INTERNAL, f"{argv[0]} failed: {p.stderr.decode(errors='replace').strip()}")
    return p.stdout.decode(errors="replace")


def _debugfs(disk: Path, commands: str, write: bool = False) -> str:
    """debugfs's answer to one command on the ext4 in ``disk``, or (``write``)
    its work through several, one a line (it says nothing of one that
    fails: the caller reads back what it wrote)."""
    if write:
        return _tool(["debugfs", "-w", "-f", "-", str(disk)], commands.encode())
    return _tool(["debugfs", "-R", commands, str(disk)])


GROWFS = "x-systemd.growfs"
# An OpenSSH public key line: its type, the key, a comment.
SSH_KEY = re.compile(r"^(ssh-[a-z0-9-]+|ecdsa-sha2-[a-z0-9-]+|sk-[a-z0-9@.-]+) [A-Za-z0-9+/=]+( [^\x00-\x1f]*)?$")


def check_ssh_keys(keys: list[str]) -> list[str]:
    """The public keys of an authorized_keys file (blank and # lines left out)."""
    out = [k.strip() for text in keys for k in text.splitlines()
           if k.strip() and not k.strip().startswith("#")]
    for k in out:
        if not SSH_KEY.match(k):
            raise OsctlError(INVALID, f"not an OpenSSH public key: {k[:40]!r}")
    return out


def prepare_guest(rootfs: Path, ssh_keys: list[str]) -> None:
    """The staged root filesystem of a new VM: grown to its disk at each
    boot (``x-systemd.growfs`` on / in its fstab), root's SSH keys."""
    fs = RootFS(rootfs)
    fstab = fs.read("etc/fstab")
    if fstab is not None:
        lines = []
        for line in fstab.splitlines():
            f = line.split()
            if len(f) >= 4 and not f[0].startswith("#") and f[1] == "/" and GROWFS not in f[3].split(","):
                line = "\t".join([*f[:3], f"{f[3]},{GROWFS}", *f[4:]])
            lines.append(line)
        fs.write("etc/fstab", "\n".join(lines) + "\n")
    if ssh_keys:
        fs.write("root/.ssh/authorized_keys", "".join(f"{k}\n" for k in ssh_keys), 0o600)
