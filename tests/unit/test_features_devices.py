"""Feature bundles, device grants and prlimits as LXC config: pure rendering."""

from pathlib import Path

import pytest

from osctl.protocol import OsctlError
from osctld.model.device import DeviceGrant
from osctld.model.prlimit import check_pair
from osctld.runtime import features
from osctld.runtime.cgroup.layout import parse
from osctld.runtime.devices import DeviceNodes, merge

V1 = parse("36 31 0:33 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices\n")
V2 = parse("30 23 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")


def test_grant_parse_and_rule():
    g = DeviceGrant.parse("char", "10", "200", "wr", "/dev/net/tun")
    assert (g.type, g.major, g.minor, g.mode, g.rule) == ("c", 10, 200, "rw", "c 10:200 rw")
    assert DeviceGrant.parse("block", "*", "*", "m").rule == "b *:* m"
    assert DeviceGrant.from_dict(g.to_dict()) == g


@pytest.mark.parametrize("args", [
    ("pipe", "1", "1", "r"), ("c", "x", "1", "r"), ("c", "1", "1", "rx"), ("c", "1", "1", ""),
    ("c", "1", "1", "rr"), ("c", "1", "1", "r", "/etc/passwd"), ("c", "1", "1", "r", "/dev/../etc"),
    ("c", "*", "1", "r", "/dev/x"), ("c", "1", str(2**20), "r"),
])
def test_bad_grants_are_invalid(args):
    with pytest.raises(OsctlError) as e:
        DeviceGrant.parse(*args)
    assert e.value.code == "invalid"


def test_merge_joins_modes_of_one_device():
    a = DeviceGrant("c", 10, 229, "r", "/dev/fuse")
    b = DeviceGrant("c", 10, 229, "wm")
    assert merge([a, b]) == [DeviceGrant("c", 10, 229, "rwm", "/dev/fuse")]


def test_device_lines_follow_the_cgroup_version():
    nodes = DeviceNodes(Path("/run/osctld/devices"))
    grants = merge(features.grants(["tun", "docker"]))
    v1 = nodes.lxc_lines(V1, "p", "c1", grants)
    assert v1[0] == "lxc.cgroup.devices.deny = a"
    assert "lxc.cgroup.devices.allow = c 10:200 rwm" in v1
    assert "lxc.cgroup.devices.allow = c 10:229 rwm" in v1
    assert v1.count("lxc.mount.entry = /run/osctld/devices/p/c1/net/tun dev/net/tun "
                    "none bind,create=file 0 0") == 1
    v2 = nodes.lxc_lines(V2, "p", "c1", grants)
    assert v2[0] == "lxc.cgroup2.devices.deny = a"
    assert not any(line.startswith("lxc.cgroup.") for line in v2)


def test_feature_table_bundles():
    assert set(features.FEATURES) == {"tun", "fuse", "kvm", "ppp", "lxc", "docker", "keyctl"}
    assert features.mount_auto(["lxc"]) == {"cgroup": "cgroup:rw:force"}
    lines = features.lxc_lines(["lxc", "docker"])
    assert lines.count("lxc.mount.entry = proc dev/.lxc/proc proc create=dir,optional 0 0") == 1
    assert "lxc.sysctl.net.ipv4.ip_forward = 1" in lines
    assert features.lxc_lines(["kvm"]) == []
    with pytest.raises(OsctlError):
        features.check_names(["kvm", "warp"])


def test_prlimit_pairs():
    assert check_pair("nproc", "100", None) == (100, 100)
    assert check_pair("memlock", "64", "unlimited") == (64, "unlimited")
    for bad in (("nofile", "10", "5"), ("nofile", "unlimited", None), ("bogus", "1", None),
                ("core", "unlimited", "5")):
        with pytest.raises(OsctlError):
            check_pair(*bad)


def test_render_takes_mount_auto_overrides_and_prlimits():
    from osctld.model.container import Container
    from osctld.model.idmap import MapEntry
    from osctld.model.user import User
    from osctld.runtime.lxc_config import Hooks, LxcSpec, render

    ct = Container(id="c1", pool="p", user="u", distribution="busybox", version="1",
                   features=["lxc"], prlimits={"nofile": [1024, 4096]})
    user = User("u", "p", [MapEntry(0, 100000, 65536)], [MapEntry(0, 100000, 65536)])
    text = render(LxcSpec(ct=ct, user=user, rootfs=Path("/r"), idmap="idmapped",
                          log_file=Path("/l"), hooks=Hooks(Path("/s")), seccomp=Path("/sc"),
                          mount_auto=features.mount_auto(ct.features), prlimits=ct.prlimits))
    assert "lxc.mount.auto = proc:mixed sys:mixed cgroup:rw:force\n" in text
    assert "lxc.prlimit.nofile = 1024:4096\n" in text
    # Persisted and read back with the grants as objects.
    ct.devices = [DeviceGrant("c", 10, 200, "rw", "/dev/net/tun")]
    again = Container.from_dict(ct.to_dict(), "p")
    assert again.devices == ct.devices and again.features == ["lxc"]
