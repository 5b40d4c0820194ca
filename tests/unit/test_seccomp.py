"""Every container's seccomp profile: the deny-list, what features take off
it, and the statfs proxy's notify rules merged into the same profile."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from osctld.model.container import Container
from osctld.runtime import features
from osctld.runtime.container import Containers

DENY = """\
2
denylist
reject_force_umount
[all]
kexec_load errno 38
kexec_file_load errno 38
open_by_handle_at errno 38
init_module errno 38
finit_module errno 38
delete_module errno 38
"""
KEYCTL = "keyctl errno 38\n"
NOTIFY = "[x86_64]\nstatfs notify\nfstatfs notify\n"


def profile_of(backend: str = "dir", disk: int | None = None, feats: list[str] | None = None) -> str:
    pstate = SimpleNamespace(pool=SimpleNamespace(backend=backend))
    ct = Container("c1", "p", "u", "busybox", "1", disk=disk, features=feats or [])
    return Containers.seccomp_profile(pstate, ct)


def test_every_container_gets_the_deny_list_answered_with_enosys():
    assert profile_of() == DENY + KEYCTL
    assert profile_of("btrfs") == DENY + KEYCTL  # no quota: nothing to intercept


def test_a_btrfs_quota_adds_the_notify_rules_to_the_same_profile():
    assert profile_of("btrfs", 20 << 20) == DENY + KEYCTL + NOTIFY
    assert profile_of("zfs", 20 << 20) == DENY + KEYCTL


def test_nesting_and_docker_keep_the_list_keyctl_relaxes_only_keyctl():
    assert profile_of(feats=["lxc", "docker", "tun", "fuse"]) == DENY + KEYCTL
    assert features.seccomp_allow(["docker", "keyctl"]) == {"keyctl"}
    assert profile_of(feats=["keyctl"]) == DENY
    assert profile_of("btrfs", 1 << 30, ["keyctl", "lxc"]) == DENY + NOTIFY


def test_every_feature_allows_only_calls_on_the_list():
    from osctld.runtime.seccomp import DENIED
    for f in features.FEATURES.values():
        assert set(f.seccomp_allow) <= set(DENIED), f.name


def test_profile_and_config_sit_in_the_containers_lxc_dir_root_only(tmp_path: Path):
    from osctld.runtime.lxc import LxcRuntime
    lxc = LxcRuntime(tmp_path, lambda pool: tmp_path / "log")
    lxc.write_config("p", "c1", "lxc.uts.name = c1\n", DENY)
    assert lxc.seccomp_file("p", "c1") == lxc.ct_dir("p", "c1") / "seccomp"
    assert lxc.seccomp_file("p", "c1").read_text() == DENY
    for f in ("seccomp", "config"):
        assert (lxc.ct_dir("p", "c1") / f).stat().st_mode & 0o777 == 0o600
    assert lxc.ct_dir("p", "c1").stat().st_mode & 0o777 == 0o700
    assert lxc.lxcpath("p").stat().st_mode & 0o777 == 0o711  # LXC: the container's root passes
