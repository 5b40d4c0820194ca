"""osctl on many containers and VMs at once, and the table an operator
reads: seen from outside, through the CLI against a real node."""

from __future__ import annotations

import json

from tests.integration.test_vm import new_tiny, qemu_alive, vmnode  # noqa: F401 (fixture)


def states(node) -> dict[str, str]:
    return {c["id"]: c["state"] for c in node.osctl_json("ct", "ls")}


def test_bulk_start_stop_feature_and_delete_of_containers(node):
    for user, cts in (("alice", ("a1", "a2", "a3")), ("bob", ("b1",))):
        node.osctl("user", "new", user)
        for ct in cts:
            node.osctl("ct", "new", ct, "--user", user)
    node.osctl("group", "new", "/web")
    node.osctl("ct", "new", "w1", "--user", "bob", "--group", "/web")

    # A user's containers, each reported, as many at once as the node's parallelism.
    assert node.osctl_json("status")["parallelism"] == 4  # autostart_parallelism's default
    p = node.osctl("ct", "start", "-u", "alice")
    assert sorted(line.split() for line in p.stdout.splitlines()) == [
        ["default:a1", "running"], ["default:a2", "running"], ["default:a3", "running"]]
    assert states(node) == {"a1": "running", "a2": "running", "a3": "running", "b1": "stopped",
                            "w1": "stopped"}

    # A group's; JSON lists every outcome.
    res = json.loads(node.osctl("ct", "start", "-g", "/web", "-j").stdout)
    assert res == [{"id": "w1", "pool": "default", "ok": True, "state": "running"}]

    # Several IDs, one of them missing: the others are done, the exit code says not found.
    p = node.osctl("ct", "stop", "a1", "nosuch", "a2", "-t", "5", check=False)
    assert p.returncode == 3, p
    lines = dict(line.split(None, 1) for line in p.stdout.splitlines())
    assert lines["a1"] == lines["a2"] == "stopped" and lines["nosuch"].startswith("error not_found")
    assert "1 of 3 failed" in p.stderr
    assert states(node)["a1"] == states(node)["a2"] == "stopped"

    # Features on every container of a pool, staged on the running ones.
    p = node.osctl("ct", "feature", "enable", "-p", "default", "tun", "--no-restart")
    assert len(p.stdout.splitlines()) == 5
    assert all("tun" in c["features"] for c in node.osctl_json("ct", "ls"))

    # Every container, running ones forced.
    node.osctl("ct", "del", "--all", "-f")
    assert node.osctl_json("ct", "ls") == []


def test_ct_ls_reads_as_a_person_reads_it(node):
    node.osctl("user", "new", "alice")
    node.osctl("ct", "new", "web1", "--user", "alice", "--memory", "512M")
    node.osctl("ct", "new", "db1", "--user", "alice", "--memory", "2G")
    node.osctl("ct", "netif", "new", "web1", "eth0")
    # A change prints what changed, not the whole object.
    p = node.osctl("ct", "netif", "ip", "add", "web1", "eth0", "192.0.2.10")
    assert p.stdout == "web1: netifs.eth0.addresses +192.0.2.10/32\n"
    assert node.osctl("ct", "set", "memory", "db1", "+1G").stdout == "db1: limits.memory 2G -> 3G\n"
    assert node.osctl("ct", "set", "memory", "db1", "3G", "-q").stdout == ""
    # Options after the command, sorting, address and memory columns in units.
    p = node.osctl("ct", "ls", "-o", "id,ipv4,memory", "-s", "-memory")
    assert [line.split() for line in p.stdout.splitlines()] == [
        ["ID", "IPV4", "MEMORY"], ["db1", "-", "3G"], ["web1", "192.0.2.10", "512M"]]
    p = node.osctl("ct", "ls", "-o", "id,memory", "-s", "id", "-H", "--parsable")
    assert p.stdout.split() == ["db1", str(3 << 30), "web1", str(512 << 20)]


def test_bulk_start_and_kill_of_vms(vmnode):  # noqa: F811 (the fixture)
    node = vmnode
    for vm in ("v1", "v2"):
        new_tiny(node, vm)
    res = json.loads(node.osctl("vm", "start", "v1", "v2", "-j").stdout)
    assert [(r["id"], r["ok"], r["state"]) for r in res] == [("v1", True, "running"), ("v2", True, "running")]
    pids = [v["pid"] for v in node.osctl_json("vm", "ls")]
    assert all(qemu_alive(pid) for pid in pids)
    p = node.osctl("vm", "kill", "--all", "-u", "vmuser")
    assert sorted(p.stdout.split()) == ["default:v1", "default:v2", "stopped", "stopped"]
    assert not any(qemu_alive(pid) for pid in pids)
