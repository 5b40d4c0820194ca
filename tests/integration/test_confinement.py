"""What confines a container, checked from inside: the seccomp deny-list
and the capability bounding set.

The system calls are made by tests/helpers/syscalls.c. This node's kernel
has neither modules nor kexec, so those calls say ENOSYS with or without a
filter; keyctl and open_by_handle_at (and keyctl through the 32-bit entry)
show the filter."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.syscalls import ENOSYS, errnos, install, syscalls_program  # noqa: F401 (fixture)

DENIED = ("keyctl", "i386-keyctl", "open_by_handle_at", "init_module", "i386-init_module",
          "finit_module", "delete_module", "kexec_load", "kexec_file_load")
DROPPED = {"sys_module": 16, "sys_rawio": 17, "sys_time": 25, "mac_override": 32, "mac_admin": 33}


def status(pid: int, key: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    raise KeyError(key)


def test_deny_list_answers_enosys_inside_and_keyctl_feature_relaxes_it(node, syscalls_program):
    node.osctl("user", "new", "alice")
    node.osctl("ct", "new", "s1", "--user", "alice")
    install(node, "s1", syscalls_program)
    node.osctl("ct", "start", "s1")

    assert errnos(node, "s1", *DENIED, "getpid", "i386-getpid") == {
        **dict.fromkeys(DENIED, ENOSYS), "getpid": 0, "i386-getpid": 0}
    p = node.exec("s1", "sh", "-c", "echo osctl | sed s/o/O/ | tr a-z A-Z | wc -c")
    assert (p.returncode, p.stdout.strip()) == (0, "6"), p.stderr

    pid = node.osctl_json("ct", "show", "s1")["init_pid"]
    assert status(pid, "Seccomp") == "2"  # SECCOMP_MODE_FILTER
    bounding = int(status(pid, "CapBnd"), 16)
    assert [name for name, bit in DROPPED.items() if bounding >> bit & 1] == []
    assert bounding >> 21 & 1  # sys_admin: the rest of the set is there

    # keyctl: kernel keyrings, and nothing else off the list.
    node.osctl("ct", "feature", "enable", "s1", "keyctl")
    got = errnos(node, "s1", *DENIED)
    assert got["keyctl"] != ENOSYS and got["i386-keyctl"] != ENOSYS, got
    assert {k: v for k, v in got.items() if "keyctl" not in k} == dict.fromkeys(
        (d for d in DENIED if "keyctl" not in d), ENOSYS)
    pid = node.osctl_json("ct", "show", "s1")["init_pid"]
    assert status(pid, "Seccomp") == "2"
