"""What a hosting operator does to a tenant's container besides its
settings: reinstall it from its template, move it to another resource
group, rename it. Each is checked from outside: the address answers from
the node's namespace, the file is gone, the cgroup is the new group's, the
old name is gone everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.wait import wait_for
from tests.integration.test_limits import MIB, ct_cgroup, df_k
from tests.integration.test_net import forwarding_on, node_pings, routed_ct


def test_reinstall_keeps_config_and_address_and_drops_the_files(node):
    forwarding_on(node)
    node.osctl("user", "new", "alice")
    routed_ct(node, "r1", "busybox", ["192.0.2.40"], "2001:db8::40")
    node.osctl("ct", "set", "memory", "r1", "256M")
    node.osctl("ct", "feature", "enable", "r1", "tun")
    pid = node.osctl_json("ct", "start", "r1")["init_pid"]
    wait_for(lambda: node_pings(node, "192.0.2.40"), message="192.0.2.40 to answer")
    assert node.exec("r1", "sh", "-c", "echo tenant > /root/mine").returncode == 0
    before = node.osctl_json("ct", "show", "r1")
    assert before["template"] == "busybox"  # recorded at creation

    # Refused while it runs, bad input: nothing changes, it runs on.
    for bad, code in ((["r1"], 6), (["r1", "--template", "nope", "--restart"], 3),
                      (["r1", "--version", "0.bad", "--restart"], 2), (["nope", "--restart"], 3)):
        p = node.osctl("ct", "reinstall", *bad, check=False)
        assert p.returncode == code, p.stderr
    assert "--restart" in node.osctl("ct", "reinstall", "r1", check=False).stderr
    assert node.osctl_json("ct", "show", "r1")["init_pid"] == pid
    assert node.exec("r1", "cat", "/root/mine").stdout == "tenant\n"

    res = node.osctl_json("ct", "reinstall", "r1", "--restart", "--timeout", "5")
    assert res["state"] == "running" and res["init_pid"] != pid
    wait_for(lambda: node_pings(node, "192.0.2.40"), message="192.0.2.40 to answer after reinstall")
    assert node_pings(node, "2001:db8::40")
    assert node.exec("r1", "test", "-e", "/root/mine").returncode != 0
    after = node.osctl_json("ct", "show", "r1")
    for key in ("id", "netifs", "features", "limits", "hostname", "template", "user", "group"):
        assert after[key] == before[key], key
    rootfs = Path(after["rootfs"])
    assert sorted(p.name for p in rootfs.parent.iterdir()) == ["rootfs"]  # the old one is gone

    # Stopped: reinstalled without --restart, and stays stopped.
    node.osctl("ct", "stop", "r1", "-t", "5")
    (rootfs / "root" / "mine").write_text("again\n")
    assert node.osctl_json("ct", "reinstall", "r1")["state"] == "stopped"
    assert not (rootfs / "root" / "mine").exists()


def test_set_group_moves_a_stopped_container_into_the_groups_cgroup(node):
    node.osctl("user", "new", "alice")
    node.osctl("group", "new", "/prod", "--memory", "300M")
    node.osctl("ct", "new", "g1", "--user", "alice")
    pid = node.osctl_json("ct", "start", "g1")["init_pid"]

    # Refused while it runs, and for a group that is not there: nothing changes.
    p = node.osctl("ct", "set", "group", "g1", "/prod", check=False)
    assert p.returncode == 6 and "stop it" in p.stderr, p.stderr
    p = node.osctl("ct", "set", "group", "g1", "/nope", check=False)
    assert p.returncode == 3, p.stderr
    assert node.osctl_json("ct", "show", "g1")["group"] == "/default"
    assert "pool.default/group.default/ct.g1" in Path(f"/proc/{pid}/cgroup").read_text()

    node.osctl("ct", "stop", "g1", "-t", "5")
    assert node.osctl("ct", "set", "group", "g1", "/prod").stdout.strip() == "g1: group /default -> /prod"
    pid = node.osctl_json("ct", "start", "g1")["init_pid"]
    shown = node.osctl_json("ct", "show", "g1")
    assert shown["group"] == "/prod" and shown["effective_limits"]["memory"] == 300 * MIB
    assert "pool.default/group.prod/ct.g1" in Path(f"/proc/{pid}/cgroup").read_text()
    group_dir = ct_cgroup(node, "g1", "memory", "/prod").parent
    limit = (group_dir / "memory.max") if (group_dir / "memory.max").exists() \
        else (group_dir / "memory.limit_in_bytes")
    assert int(limit.read_text()) == 300 * MIB
    assert [c for c in node.osctl_json("group", "show", "/prod")["container_ids"]] == ["g1"]


def test_rename_moves_everything_keyed_by_the_id(node):
    node.osctl("user", "new", "alice")
    node.osctl("ct", "new", "n1", "--user", "alice")
    node.osctl("ct", "new", "taken", "--user", "alice")
    node.osctl("ct", "start", "n1")
    p = node.osctl("ct", "rename", "n1", "n2", check=False)
    assert p.returncode == 6 and "stop it" in p.stderr, p.stderr
    node.osctl("ct", "stop", "n1", "-t", "5")
    rootfs = Path(node.osctl_json("ct", "show", "n1")["rootfs"])
    (rootfs / "root" / "mine").write_text("kept\n")
    for new, code in (("taken", 4), ("Bad/Name", 2)):
        p = node.osctl("ct", "rename", "n1", new, check=False)
        assert p.returncode == code, p.stderr
    assert node.osctl_json("ct", "show", "n1")["state"] == "stopped"
    log = node.osctl_json("ct", "log", "n1")["log"]

    assert node.osctl("ct", "rename", "n1", "n2").stdout == "n1: renamed to n2\n"
    conf = node.state_dir / "pools/default/conf/ct"
    lxc = node.run_dir / "lxc/default"
    assert (conf / "n2.yml").is_file() and not (conf / "n1.yml").exists()
    logs = node.state_dir / "pools/default/log/ct"
    assert node.osctl_json("ct", "log", "n2")["log"] == log  # its log in the pool moved too
    assert not (logs / "n1.log").exists()
    assert not rootfs.parent.exists() and (lxc / "n2").is_dir() and not (lxc / "n1").exists()
    assert node.osctl("ct", "show", "n1", check=False).returncode == 3
    assert node.osctl_json("ct", "start", "n2")["state"] == "running"
    assert node.exec("n2", "cat", "/root/mine").stdout == "kept\n"
    assert sorted(c["id"] for c in node.osctl_json("ct", "ls")) == ["n2", "taken"]
    # Its past is found by its new name; a new container may take the old one.
    cmds = [e["cmd"] for e in node.osctl_json("history", "n2")]
    assert cmds[:1] == ["ct.new"] and "ct.rename" in cmds and cmds[-1] == "ct.start"
    node.restart()
    assert sorted(c["id"] for c in node.osctl_json("ct", "ls")) == ["n2", "taken"]
    node.osctl("ct", "new", "n1", "--user", "alice")


def test_reinstall_and_rename_on_btrfs_keep_the_quota(node):
    """On btrfs the rootfs is a subvolume with a qgroup limit: the new one
    gets the container's quota, and a rename moves the subvolume whole."""
    node.osctl("pool", "install", "bb", "--backend", "btrfs", "--image", str(node.dir / "b.img"),
               "--size", "300M", "--path", str(node.dir / "bb"),
               "--id-base", str(node.id_base + 33 * 524288))
    node.osctl("user", "new", "d", "--pool", "bb")
    node.osctl("ct", "new", "b1", "--user", "bb:d", "--disk", "20M")
    rootfs = Path(node.osctl_json("ct", "show", "bb:b1")["rootfs"])
    (rootfs / "root" / "mine").write_text("old\n")
    node.osctl("ct", "reinstall", "bb:b1")
    assert not (rootfs / "root" / "mine").exists()
    node.osctl("ct", "rename", "bb:b1", "b2")
    node.osctl("ct", "start", "bb:b2")
    assert df_k(node, "bb:b2")[0] == 20 * 1024
    assert sorted(p.name for p in rootfs.parent.parent.iterdir()) == ["b2"]


def test_a_reinstall_that_cannot_start_brings_the_old_rootfs_back(node):
    """The pool's built template broken on purpose (/proc a file: LXC cannot
    mount proc there), so the new rootfs cannot start: the reinstall says
    so, the old rootfs is back and the container runs on it again."""
    node.osctl("user", "new", "alice")
    node.osctl("ct", "new", "x1", "--user", "alice")
    node.osctl("ct", "start", "x1")
    assert node.exec("x1", "sh", "-c", "echo tenant > /root/mine").returncode == 0
    tpl = node.state_dir / "pools/default/tpl/busybox-1"
    (tpl / "proc").rmdir()
    (tpl / "proc").write_text("")
    p = node.osctl("ct", "reinstall", "x1", "--restart", "--timeout", "5", check=False)
    assert p.returncode != 0 and "reinstall of x1 failed" in p.stderr, p.stderr
    assert "old root filesystem is back" in p.stderr, p.stderr
    show = node.osctl_json("ct", "show", "x1")
    assert show["state"] == "running" and show["template"] == "busybox"
    assert node.exec("x1", "cat", "/root/mine").stdout == "tenant\n"
    assert sorted(p.name for p in Path(show["rootfs"]).parent.iterdir()) == ["rootfs"]


@pytest.mark.usefixtures("debian_template")
def test_reinstall_from_another_template_writes_its_network_its_way(node):
    """Busybox to Debian: the distribution and version follow the template,
    and the new system's own init brings the same address up."""
    forwarding_on(node)
    node.osctl("user", "new", "alice")
    routed_ct(node, "d1", "busybox", ["192.0.2.41"], "2001:db8::41")
    res = json.loads(node.osctl("-j", "ct", "reinstall", "d1", "-t", "debian", timeout=600).stdout)
    assert (res["template"], res["distribution"], res["state"]) == ("debian", "debian", "stopped")
    node.osctl("ct", "start", "d1", "--wait")
    assert "ID=debian" in node.exec("d1", "cat", "/etc/os-release").stdout
    wait_for(lambda: node_pings(node, "192.0.2.41"), message="192.0.2.41 to answer from debian")
    p = node.osctl("ct", "reinstall", "d1", "-t", "busybox", "-v", "bookworm", "--restart", check=False)
    assert p.returncode == 2 and "bookworm" in p.stderr, p.stderr
    assert node.osctl_json("ct", "show", "d1")["distribution"] == "debian"
