"""Features and device grants, checked from inside the container.

One busybox container per test carries several checks, to keep CI short.
TUN is checked with busybox's tunctl (TUNSETIFF + TUNSETPERSIST, what
``ip tuntap add`` does; busybox's ip has no tuntap and the busybox
container has no iproute2), the other devices by opening their node with
the shell (``exec 3<``; ``<>`` after ``test -c``, as it would create a file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from osctld.runtime.cgroup import layout as cgroups
from tests.helpers import nested

DEVICE_CHECKS = {
    "tun": "tunctl -t osctltap0 >/dev/null && ip link show osctltap0 >/dev/null",
    "fuse": "exec 3</dev/fuse",
    "kvm": "test -c /dev/kvm && exec 3<>/dev/kvm",
    "ppp": "test -c /dev/ppp && exec 3<>/dev/ppp",
}


def ppp_driver() -> bool:
    """Is PPP in this node's kernel (char major 108)? Without it /dev/ppp
    can exist and pass the devices cgroup but opening it ends in ENXIO."""
    return any(line.split()[:2] == ["108", "ppp"]
               for line in Path("/proc/devices").read_text().splitlines())


def check(node, ct: str, feature: str) -> tuple[bool, str]:
    p = node.exec(ct, "sh", "-c", DEVICE_CHECKS[feature])
    return p.returncode == 0, p.stderr.strip()


def assert_devices(node, ct: str, on: bool) -> None:
    for feature in DEVICE_CHECKS:
        ok, err = check(node, ct, feature)
        if feature == "ppp" and on and not ppp_driver():
            # The node exists and the devices cgroup lets it through: the
            # open reaches the (absent) driver, not a permission check.
            assert not ok and "No such device or address" in err, err
            continue
        assert ok == on, f"{feature}: expected {'success' if on else 'failure'}, got {err!r}"


def test_device_features_on_off_and_staged(node):
    node.osctl("user", "new", "alice")
    node.osctl("ct", "new", "f1", "--user", "alice")
    node.osctl("ct", "start", "f1")
    assert_devices(node, "f1", on=False)
    pid_before = node.osctl_json("ct", "show", "f1")["init_pid"]

    # Staged, not a silent restart: the tenant runs on, with the same init
    # and without the devices, and both show and ls say a restart is pending.
    res = node.osctl_json("ct", "feature", "enable", "f1", "tun", "fuse", "kvm", "ppp")
    assert not res["restarted"] and res["features"] == ["tun", "fuse", "kvm", "ppp"]
    show = node.osctl_json("ct", "show", "f1")
    assert (show["state"], show["init_pid"], show["pending_restart"]) == ("running", pid_before, True)
    listed = {r["id"]: r for r in node.osctl_json("ct", "ls")}
    assert listed["f1"]["pending_restart"] is True
    assert "pending_restart" in node.osctl("ct", "ls").stdout.splitlines()[0].lower().replace(" ", "_")
    assert not check(node, "f1", "fuse")[0]
    # ct restart applies them: seen from inside.
    node.osctl("ct", "restart", "f1")
    show = node.osctl_json("ct", "show", "f1")
    assert show["init_pid"] != pid_before and show["pending_restart"] is False
    assert_devices(node, "f1", on=True)
    enabled = {f["name"] for f in node.osctl_json("ct", "feature", "ls", "f1") if f["enabled"]}
    assert enabled == {"tun", "fuse", "kvm", "ppp"}

    # --restart: at once.
    res = node.osctl_json("ct", "feature", "disable", "f1", "tun", "fuse", "kvm", "ppp", "--restart")
    assert res["restarted"] and res["features"] == [] and res["init_pid"] != show["init_pid"]
    assert not res["pending_restart"]
    assert_devices(node, "f1", on=False)

    # The feature survives a daemon restart in the container's config.
    node.osctl("ct", "feature", "enable", "f1", "fuse", "--no-restart")
    node.restart()
    show = node.osctl_json("ct", "show", "f1")
    assert show["features"] == ["fuse"] and show["pending_restart"] is True

    # Unknown names change nothing.
    p = node.osctl("ct", "feature", "enable", "f1", "fuse", "warp", check=False)
    assert p.returncode == 2 and "warp" in p.stderr
    assert node.osctl_json("ct", "show", "f1")["features"] == ["fuse"]


def test_device_grants_are_enforced_by_the_devices_cgroup(node):
    node.osctl("user", "new", "bob")
    node.osctl("ct", "new", "d1", "--user", "bob")
    # Write-only grant of FUSE, staged on a stopped container.
    node.osctl("ct", "devices", "add", "d1", "char", "10", "229", "w", "/dev/fuse")
    node.osctl("ct", "start", "d1")
    rows = node.osctl_json("ct", "devices", "ls", "d1")
    assert {"type": "c", "major": 10, "minor": 229, "mode": "w", "path": "/dev/fuse",
            "source": "ct"} in rows
    assert node.exec("d1", "test", "-c", "/dev/fuse").returncode == 0
    # The node is there, the cgroup refuses a read open and allows a write open.
    p = node.exec("d1", "sh", "-c", "exec 3</dev/fuse")
    assert p.returncode != 0 and "Operation not permitted" in p.stderr, p.stderr
    assert node.exec("d1", "sh", "-c", "exec 3>/dev/fuse").returncode == 0
    pid = node.osctl_json("ct", "show", "d1")["init_pid"]
    cg = next(ln.split(":", 2)[2] for ln in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
              if ln.split(":")[1] == "devices") if cgroups.detect().version("devices") == 1 else None
    if cg is not None:
        listing = Path(f"{cgroups.detect().v1['devices']}{cg}/devices.list").read_text().split("\n")
        assert "c 10:229 w" in listing and "a *:* rwm" not in listing

    # Bad grants are refused and change nothing.
    for bad in (["char", "10", "229", "rx"], ["char", "ten", "1", "r"],
                ["char", "10", "1", "r", "/etc/passwd"], ["char", "10", "229", "r"],
                ["char", "10", "200", "rw", "/dev/fuse"]):
        p = node.osctl("ct", "devices", "add", "d1", *bad, check=False)
        assert p.returncode in (2, 4), p.stderr
    assert len(node.osctl_json("ct", "show", "d1")["devices"]) == 1

    res = node.osctl_json("ct", "devices", "del", "d1", "char", "10", "229", "--restart")
    assert res["restarted"] and res["devices"] == []
    assert node.exec("d1", "test", "-e", "/dev/fuse").returncode != 0
    p = node.osctl("ct", "devices", "del", "d1", "char", "10", "229", check=False)
    assert p.returncode == 3


def test_a_restart_that_cannot_start_leaves_it_running_as_before(node):
    """A grant that breaks the start (a device node bound over the /dev/pts
    directory), staged then applied by ct restart, or applied at once with
    --restart: the restart says so and the container runs again with its
    old config, the grant undone, never left stopped."""
    node.osctl("user", "new", "bob")
    node.osctl("ct", "new", "r1", "--user", "bob")
    node.osctl("ct", "start", "r1")
    conf = node.state_dir / "pools/default/conf/ct/r1.yml"
    bad = ["char", "1", "3", "rw", "/dev/pts"]
    node.osctl("ct", "devices", "add", "r1", *bad)
    assert node.osctl_json("ct", "show", "r1")["pending_restart"] is True
    p = node.osctl("ct", "restart", "r1", check=False)
    assert p.returncode != 0 and "restart of r1 failed" in p.stderr, p.stderr
    assert "it runs with its config from before the staged changes" in p.stderr, p.stderr
    show = node.osctl_json("ct", "show", "r1")
    assert show["state"] == "running" and show["devices"] == [] and not show["pending_restart"]
    assert node.exec("r1", "test", "-d", "/dev/pts").returncode == 0
    assert "/dev/pts" not in conf.read_text()

    p = node.osctl("ct", "devices", "add", "r1", *bad, "--restart", check=False)
    assert p.returncode != 0 and "restart of r1 failed" in p.stderr, p.stderr
    assert "it runs with its config from before" in p.stderr, p.stderr
    show = node.osctl_json("ct", "show", "r1")
    assert show["state"] == "running" and show["devices"] == [] and not show["pending_restart"]
    assert node.exec("r1", "test", "-d", "/dev/pts").returncode == 0
    assert "/dev/pts" not in conf.read_text()


def test_nesting_and_docker_requirements(node):
    """lxc: a nested busybox container (the node's LXC tools copied in, see
    tests/helpers/nested.py) with a pids limit starts inside; without the
    feature there are no cgroups to make inside and it fails.

    docker: what Docker's daemon asks of the kernel, checked inside:
    cgroup hierarchies mounted at /sys/fs/cgroup in which it can make child
    cgroups (one per Docker container); a fresh proc and sysfs mount (runc
    makes them per container); an overlay mount (the overlay2 storage
    driver); IPv4 forwarding on in the container's network namespace
    (bridge networking); /dev/fuse and /dev/net/tun (fuse-overlayfs,
    rootless networking). Nesting and Docker run under the seccomp deny-list."""
    node.osctl("user", "new", "carol")
    node.osctl("ct", "new", "n1", "--user", "carol")
    nested.install(Path(node.osctl_json("ct", "show", "n1")["rootfs"]))
    node.osctl("ct", "start", "n1")
    layout = cgroups.detect()
    ctrls = [c for c in ("memory", "pids", "cpu", "devices") if layout.version(c) == 1] or ["unified"]
    docker_checks = {
        "cgroups": " && ".join(f"mkdir /sys/fs/cgroup/{c}/dockerprobe && rmdir /sys/fs/cgroup/{c}/dockerprobe"
                               for c in ctrls) if ctrls != ["unified"] else
                   "mkdir /sys/fs/cgroup/dockerprobe && rmdir /sys/fs/cgroup/dockerprobe",
        "proc+sysfs": "mkdir -p /tmp/p /tmp/s && mount -t proc proc /tmp/p && mount -t sysfs sysfs /tmp/s"
                      " && umount /tmp/p /tmp/s",
        "overlay": "cd /tmp && mkdir -p l u w m && mount -t overlay overlay "
                   "-o lowerdir=l,upperdir=u,workdir=w m && umount m",
        "ip_forward": "test \"$(cat /proc/sys/net/ipv4/ip_forward)\" = 1",
        "fuse+tun": "test -c /dev/net/tun && exec 3</dev/fuse 4<>/dev/net/tun",
    }

    def docker_ok() -> dict:
        return {k: node.exec("n1", "sh", "-c", v).returncode == 0 for k, v in docker_checks.items()}

    def nested_runs() -> bool:
        node.exec("n1", *nested.start_cmd())
        state = node.exec("n1", *nested.state_cmd()).stdout.strip()
        node.exec("n1", *nested.stop_cmd())
        return state == "RUNNING"

    assert not nested_runs()
    without = docker_ok()
    assert not all(without.values()), without

    node.osctl("ct", "feature", "enable", "n1", "lxc", "--restart")
    assert nested_runs()

    node.osctl("ct", "feature", "disable", "n1", "lxc", "--restart")
    assert not nested_runs()
    node.osctl("ct", "feature", "enable", "n1", "docker", "--restart")
    assert docker_ok() == dict.fromkeys(docker_checks, True)
    # All of it under the seccomp deny-list: neither feature takes a call off it.
    pid = node.osctl_json("ct", "show", "n1")["init_pid"]
    assert "\nSeccomp:\t2\n" in Path(f"/proc/{pid}/status").read_text()
    # What fails without the feature, for the record of what it brings.
    assert [k for k, v in without.items() if not v] == ["cgroups", "ip_forward", "fuse+tun"]


def test_prlimit_at_start_and_live(node):
    name = "nofile"
    node.osctl("user", "new", "dave")
    node.osctl("ct", "new", "p1", "--user", "dave")
    node.osctl("ct", "set", "prlimit", "p1", name, "1234", "4096")
    node.osctl("ct", "start", "p1")
    assert node.exec("p1", "sh", "-c", "ulimit -n").stdout.strip() == "1234"
    assert node.exec("p1", "sh", "-c", "ulimit -Hn").stdout.strip() == "4096"
    show = node.osctl_json("ct", "show", "p1")
    assert show["prlimits"] == {name: [1234, 4096]}
    assert show["prlimits_in_force"] == {name: [1234, 4096]}

    # Live: processes already running get it (a process started before the
    # change). The soft limit rises and the hard one falls: raising a hard
    # limit needs CAP_SYS_RESOURCE, which a confined daemon may lack.
    node.exec("p1", "sh", "-c", "sleep 300 >/dev/null 2>&1 &")
    res = node.osctl_json("ct", "set", "prlimit", "p1", name, "2048", "3000")
    assert res["applied_to"] >= 2 and res["refused_by"] == 0
    assert node.osctl_json("ct", "show", "p1")["prlimits_in_force"] == {name: [2048, 3000]}
    assert node.exec("p1", "sh", "-c", "ulimit -n").stdout.strip() == "2048"
    sleeper = node.exec("p1", "pidof", "sleep").stdout.split()[0]
    assert node.exec("p1", "grep", "open files", f"/proc/{sleeper}/limits").stdout.split()[3:5] \
        == ["2048", "3000"]

    for bad in (["nofile", "10", "5"], ["nofiles", "10"], ["nofile", "-1x"], ["nofile", "unlimited"]):
        assert node.osctl("ct", "set", "prlimit", "p1", *bad, check=False).returncode == 2
    node.osctl("ct", "set", "prlimit", "p1", name, "none")
    assert node.osctl_json("ct", "show", "p1")["prlimits"] == {}


@pytest.mark.usefixtures("debian_template")
def test_tun_with_iproute2_in_debian(node):
    """The issue's own check, ``ip tuntap add``, with Debian's iproute2."""
    node.osctl("user", "new", "frank")
    node.osctl("ct", "new", "t1", "--user", "frank", "--template", "debian")
    node.osctl("ct", "start", "t1")
    add = ("ip", "tuntap", "add", "dev", "osctltun0", "mode", "tun")
    p = node.exec("t1", *add)
    assert p.returncode != 0, p.stdout
    node.osctl("ct", "feature", "enable", "t1", "tun", "--restart")
    p = node.exec("t1", *add)
    assert p.returncode == 0, p.stderr
    assert "osctltun0" in node.exec("t1", "ip", "-o", "link", "show", "osctltun0").stdout
