"""The statfs proxy's side of LXC's seccomp notify protocol, and which
containers get it. No root: calls the proxy cannot prove to be on a quota'd
rootfs are passed back to the kernel (CONTINUE)."""

from __future__ import annotations

import os
from pathlib import Path

from osctld.runtime import statfs_proxy as sp
from osctld.runtime.statfs import StatfsProxy, wants_proxy

AUDIT_ARCH_I386 = 0x40000003


def message(nr: int, arch: int, cookie: bytes = b"/nonexistent/rootfs", req_id: int = 7) -> bytes:
    return (sp.PROXY_MSG.pack(0, 100, 200, sp.NOTIF.size, sp.RESP.size, 64, len(cookie))
            + sp.NOTIF.pack(req_id, 300, 0, nr, arch, 0, 0x1000, 0x2000, 0, 0, 0, 0)
            + bytes(sp.RESP.size) + cookie)


def answer_of(data: bytes) -> tuple | None:
    fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(3)]
    try:
        out = sp.reply(data, fds)
    finally:
        for fd in fds:
            os.close(fd)
    if out is None:
        return None
    head = sp.PROXY_MSG.size + sp.NOTIF.size
    assert len(out) == head + sp.RESP.size and out[:head] == data[:head]  # no cookie back
    return sp.RESP.unpack(out[head:])


def test_struct_sizes_match_the_kernel_and_lxc():
    assert (sp.PROXY_MSG.size, sp.NOTIF.size, sp.RESP.size, sp.STATFS.size) == (32, 80, 24, 120)


def test_other_arches_and_calls_continue():
    assert answer_of(message(sp.SYS_STATFS, AUDIT_ARCH_I386)) == (7, 0, 0, sp.FLAG_CONTINUE)
    assert answer_of(message(2, sp.AUDIT_ARCH_X86_64, req_id=9)) == (9, 0, 0, sp.FLAG_CONTINUE)


def test_a_rootfs_it_cannot_read_continues():
    assert answer_of(message(sp.SYS_STATFS, sp.AUDIT_ARCH_X86_64)) == (7, 0, 0, sp.FLAG_CONTINUE)


def test_malformed_messages_end_the_connection():
    good = message(sp.SYS_STATFS, sp.AUDIT_ARCH_X86_64)
    assert answer_of(good[:40]) is None
    assert answer_of(good + b"x") is None  # cookie_len disagrees


def test_only_btrfs_quotas_are_intercepted(tmp_path: Path):
    assert wants_proxy("btrfs", 20 << 20)
    assert not wants_proxy("btrfs", None) and not wants_proxy("zfs", 20 << 20)
    lines = StatfsProxy(tmp_path).lxc_lines(Path("/pool/ct/a/rootfs"))
    assert lines == [f"lxc.seccomp.notify.proxy = unix:{tmp_path}/statfs-proxy.sock",
                     "lxc.seccomp.notify.cookie = /pool/ct/a/rootfs"]


def test_a_failure_while_answering_continues_and_keeps_the_connection(monkeypatch, capsys):
    """An exception of ours is the kernel's call to answer (CONTINUE), never
    a closed connection: LXC would fail the call with ENOSYS."""
    def broken(*_args):
        raise ValueError("a defect")

    monkeypatch.setattr(sp, "answer", broken)
    assert answer_of(message(sp.SYS_STATFS, sp.AUDIT_ARCH_X86_64)) == (7, 0, 0, sp.FLAG_CONTINUE)
    assert "ValueError: a defect" in capsys.readouterr().err
