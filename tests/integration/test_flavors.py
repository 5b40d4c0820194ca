"""Flavors: containers and VMs created from them and changed to them, with
options that override them, and flavors outside the node's VM policy refused."""

from __future__ import annotations

from tests.integration.test_vm import vmnode  # noqa: F401  (the fixture)

MIB, GIB = 1 << 20, 1 << 30


def test_containers_by_flavor(node):
    node.osctl("user", "new", "alice")
    small = node.osctl_json("flavor", "new", "small", "--cores", "1", "--memory", "256M",
                            "--disk", "10G", "--swap", "128M")
    assert (small["cores"], small["memory"], small["disk"], small["swap"]) == (1, 256 * MIB, 10 * GIB,
                                                                               128 * MIB)
    # Outside the node's VM policy (cores 1 to 8, at least 256 MiB and 10 GiB).
    for args, words in ((("--cores", "9", "--memory", "1G", "--disk", "10G"), "cores must be 1 to 8"),
                        (("--cores", "1", "--memory", "128M", "--disk", "10G"), "at least 256 MiB"),
                        (("--cores", "1", "--memory", "1G", "--disk", "5G"), "at least 10240 MiB")):
        p = node.osctl("flavor", "new", "bad", *args, check=False)
        assert p.returncode == 2 and words in p.stderr, p.stderr
    p = node.osctl("flavor", "new", "small", "--cores", "2", "--memory", "1G", "--disk", "10G",
                   check=False)
    assert p.returncode == 4, p.stderr
    assert [f["name"] for f in node.osctl_json("flavor", "ls")] == ["small"]

    c1 = node.osctl_json("ct", "new", "c1", "--user", "alice", "--flavor", "small")
    assert (c1["flavor"], c1["limits"]) == ("small", {"cpu_limit": 1, "memory": 256 * MIB,
                                                      "swap": 128 * MIB})
    # An explicit option wins over the flavor's value.
    c2 = node.osctl_json("ct", "new", "c2", "--user", "alice", "--flavor", "small", "--memory", "512M")
    assert c2["limits"] == {"cpu_limit": 1, "memory": 512 * MIB, "swap": 128 * MIB}
    p = node.osctl("ct", "new", "c3", "--user", "alice", "--flavor", "nope", check=False)
    assert p.returncode == 3 and "flavor 'nope' not found" in p.stderr, p.stderr

    # Changed to another flavor while it runs: in force at once, as ct set does.
    node.osctl("flavor", "new", "big", "--cores", "2", "--memory", "512M", "--disk", "20G")
    node.osctl("ct", "start", "c1")
    c1 = node.osctl_json("ct", "set", "flavor", "c1", "big")
    assert (c1["flavor"], c1["limits"]["cpu_limit"], c1["limits"]["memory"]) == ("big", 2, 512 * MIB)
    in_force = node.osctl_json("ct", "show", "c1")["limits_in_force"]
    assert (in_force["memory"], in_force["cpu_limit"]) == (512 * MIB, 2)

    # A flavor something has cannot go.
    assert node.osctl_json("flavor", "show", "small")["used_by"] == ["container c2"]
    p = node.osctl("flavor", "del", "small", check=False)
    assert p.returncode == 6 and "container c2" in p.stderr, p.stderr
    node.osctl("ct", "del", "c2")
    node.osctl("flavor", "del", "small")
    assert [f["name"] for f in node.osctl_json("flavor", "ls")] == ["big"]


def test_vms_by_flavor(vmnode):  # noqa: F811
    node = vmnode
    node.osctl("flavor", "new", "small", "--cores", "1", "--memory", "256M", "--disk", "10G")
    node.osctl("flavor", "new", "big", "--cores", "2", "--memory", "512M", "--disk", "12G")
    v1 = node.osctl_json("vm", "new", "v1", "--user", "vmuser", "--template", "tinyvm",
                         "--flavor", "small")
    assert (v1["flavor"], v1["cores"], v1["memory"], v1["disk"]) == ("small", 1, 256 * MIB, 10 * GIB)
    v2 = node.osctl_json("vm", "new", "v2", "--user", "vmuser", "--template", "tinyvm",
                         "--flavor", "small", "--cores", "2")
    assert (v2["cores"], v2["memory"]) == (2, 256 * MIB)
    p = node.osctl("vm", "new", "v3", "--user", "vmuser", "--template", "tinyvm", check=False)
    assert p.returncode == 2 and "or a flavor" in p.stderr, p.stderr

    # As vm set cores/memory: pending until the next start; the disk grows at once.
    node.osctl("vm", "start", "v1")
    node.osctl("vm", "set", "flavor", "v1", "big")
    shown = node.osctl_json("vm", "show", "v1")
    assert (shown["flavor"], shown["cores"], shown["memory"], shown["disk"]) == \
        ("big", 2, 512 * MIB, 12 * GIB)
    assert (shown["running_cores"], shown["running_memory"], shown["pending_restart"]) == \
        (1, 256 * MIB, True)
    node.osctl("vm", "restart", "v1", "-t", "0")
    shown = node.osctl_json("vm", "show", "v1")
    assert (shown["running_cores"], shown["running_memory"]) == (2, 512 * MIB)
