"""What confines a container, checked from inside and on the host: the
seccomp deny-list, the capability bounding set, and root-only configs.

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

    # keyctl: kernel keyrings, and nothing else off the list.
    node.osctl("ct", "feature", "enable", "s1", "keyctl", "--restart")
    got = errnos(node, "s1", *DENIED)
    assert got["keyctl"] != ENOSYS and got["i386-keyctl"] != ENOSYS, got
    assert {k: v for k, v in got.items() if "keyctl" not in k} == dict.fromkeys(
        (d for d in DENIED if "keyctl" not in d), ENOSYS)
    pid = node.osctl_json("ct", "show", "s1")["init_pid"]
    assert status(pid, "Seccomp") == "2"


def test_bounding_set_lacks_what_lxc_drops(node):
    node.osctl("user", "new", "carol")
    node.osctl("ct", "new", "c1", "--user", "carol")
    node.osctl("ct", "start", "c1")
    bounding = int(status(node.osctl_json("ct", "show", "c1")["init_pid"], "CapBnd"), 16)
    assert [name for name, bit in DROPPED.items() if bounding >> bit & 1] == []
    assert bounding >> 21 & 1  # sys_admin: the rest of the set is there


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_configs_are_root_only(node):
    """The LXC configs under the run directory and the pool's conf/ tree
    name tenants, their ID maps and limits: root's alone."""
    node.osctl("user", "new", "bob")
    node.osctl("ct", "new", "m1", "--user", "bob", "--memory", "256M")
    node.osctl("ct", "start", "m1")

    lxc = node.run_dir / "lxc"
    ct_dir = lxc / "default" / "m1"
    # The container's root must pass through the lxcpath (LXC checks), not list it.
    assert {p.name: mode(p) for p in (lxc, lxc / "default", ct_dir)} == {
        "lxc": 0o711, "default": 0o711, "m1": 0o700}
    assert {f: mode(ct_dir / f) for f in ("config", "seccomp")} == {"config": 0o600, "seccomp": 0o600}
    assert "lxc.seccomp.profile = " + str(ct_dir / "seccomp") in (ct_dir / "config").read_text()

    conf = Path(node.osctl_json("pool", "show", "default")["path"]) / "conf"
    tree = [conf, *conf.rglob("*")]
    assert conf / "ct" / "m1.yml" in tree and conf / "user" / "bob.yml" in tree
    assert {str(p.relative_to(conf)): mode(p) for p in tree} == {
        str(p.relative_to(conf)): 0o700 if p.is_dir() else 0o600 for p in tree}
