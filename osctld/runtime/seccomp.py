"""Every container's seccomp profile, in LXC's policy format (version 2).

The deny-list is LXC's own common.seccomp and Incus's default policy:
calls that load or replace kernel code, or open any file of a filesystem by
its handle, plus ``keyctl``. Each is answered with ENOSYS, as Incus does:
software takes "not implemented" as "the kernel has no such thing" and
falls back (runc and LXC carry on without a session keyring of their own
only on ENOSYS; systemd likewise), where EPERM is often fatal. The kernel
keyring quota (kernel.keys.maxkeys) is per host UID, and all of a tenant's
containers share one, so keyrings are off unless a feature turns them on.

The rules sit in LXC's ``[all]`` section: on an x86_64 node LXC installs them
for the i386 and x32 system call tables too, so a 32-bit program cannot
reach them through ``int $0x80``. ``reject_force_umount`` refuses
``umount2(MNT_FORCE)``, as both do.

A container with notify rules (the statfs proxy, see ``statfs.py``) gets them
in the same profile: LXC loads one profile per container.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable

DENIED = ("kexec_load", "kexec_file_load", "open_by_handle_at",
          "init_module", "finit_module", "delete_module", "keyctl")


def profile(allow: Iterable[str] = (), notify: Iterable[str] = ()) -> str:
    """The profile text: ``DENIED`` less ``allow``, then ``notify`` calls sent
    to the seccomp notify proxy (x86_64 only: the proxy reads that layout)."""
    allow, notify = set(allow), list(notify)
    lines = ["2", "denylist", "reject_force_umount", "[all]"]
    lines += [f"{name} errno {errno.ENOSYS}" for name in DENIED if name not in allow]
    if notify:
        lines += ["[x86_64]", *(f"{name} notify" for name in notify)]
    return "\n".join(lines) + "\n"
