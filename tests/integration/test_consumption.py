"""Consumption records and the metrics endpoint, seen from outside: traffic
between containers of two groups, running time of a VM, a month boundary,
a scrape of the endpoint."""

from __future__ import annotations

import sys
import time

from tests.conftest import require
from tests.helpers.vm import have_qemu, vm_node_config
from tests.helpers.wait import wait_for
from tests.integration.test_net import forwarding_on

INTERVAL = 1  # seconds between samples
PING = 30000  # bytes of ICMP payload a ping carries each way


def routed_ct(node, ct: str, group: str, addr: str) -> None:
    node.osctl("ct", "new", ct, "--user", "alice", "--template", "busybox", "--group", group)
    node.osctl("ct", "netif", "new", ct, "eth0")
    node.osctl("ct", "netif", "ip", "add", ct, "eth0", addr)
    node.osctl("ct", "start", ct)


def records(node, *args: str) -> list[dict]:
    return node.osctl_json("consumption", "ls", *args)


def amount(rows: list[dict], object: str, id: str, field: str, type: str | None = None) -> float:
    return sum(r.get(field) or 0 for r in rows
               if r["object"] == object and r["id"] == id and type in (None, r["type"]))


def settled(node, read, what: str) -> float:
    """A record's value once two samples in a row agree."""
    seen: list[float] = []

    def same_twice():
        seen.append(read())
        return len(seen) > 1 and seen[-1] == seen[-2] and seen[-1]

    wait_for(same_twice, 10 * INTERVAL, 2 * INTERVAL, message=f"{what} to settle (seen {seen[-3:]})")
    return seen[-1]


def test_traffic_between_groups_survives_restarts_and_a_kill(make_node):
    node = make_node(consumption={"interval": INTERVAL})
    forwarding_on(node)
    node.osctl("user", "new", "alice")
    for g in ("/a", "/b"):
        node.osctl("group", "new", g)
    routed_ct(node, "c1", "/a", "192.0.2.41")
    routed_ct(node, "c2", "/b", "192.0.2.42")

    def ping() -> None:
        wait_for(lambda: node.exec("c1", "ping", "-c", "3", "-s", str(PING), "-W", "2",
                                   "192.0.2.42").returncode == 0, message="c1 to reach c2")

    ping()
    sent = 3 * PING
    # ct ls and ct show tell each container's traffic as it is now.
    rows = {r["id"]: r for r in node.osctl_json("ct", "ls", "-o", "id,rx_bytes,tx_bytes")}
    assert rows["c1"]["tx_bytes"] >= sent and rows["c2"]["rx_bytes"] >= sent, rows
    assert node.osctl_json("ct", "show", "c2")["usage"]["rx_bytes"] >= sent
    # c1's traffic to c2 is c1's out and c2's in, in both groups' records, at the next sample.
    want = {("ct", "c1", "tx_bytes"), ("group", "/a", "tx_bytes"),
            ("ct", "c2", "rx_bytes"), ("group", "/b", "rx_bytes")}
    t0 = time.monotonic()
    # (An interval, and the time the osctl calls take on a busy node.)
    wait_for(lambda: all(amount(records(node, "--type", "traffic"), *w) >= sent for w in want),
             3 * INTERVAL, message="the ping in both groups' records")
    print(f"records had the traffic after {time.monotonic() - t0:.1f} s")
    rows = records(node, "--type", "traffic", "--group", "/a")
    assert {r["id"] for r in rows} == {"c1", "/a"} and all(r["group"] == "/a" for r in rows), rows

    def c1_out() -> float:
        return amount(records(node, "--type", "traffic"), "ct", "c1", "tx_bytes")

    before = settled(node, c1_out, "c1's traffic")
    # A restart gives c1 a new veth, counting from zero: the records neither
    # start again nor count the old one twice.
    node.osctl("ct", "restart", "c1")
    time.sleep(3 * INTERVAL)
    after_restart = settled(node, c1_out, "c1's traffic after its restart")
    assert before <= after_restart < before + sent / 2, (before, after_restart)
    # A killed daemon goes on from its last line: c1's veth is the same one.
    node.kill()
    node.start()
    time.sleep(3 * INTERVAL)
    after_kill = settled(node, c1_out, "c1's traffic after the kill")
    assert after_restart <= after_kill < after_restart + sent / 2, (after_restart, after_kill)
    ping()
    wait_for(lambda: c1_out() >= after_kill + sent, 4 * INTERVAL, message="new traffic counted")
    assert c1_out() < after_kill + 2 * sent
    # Records of a deleted container stay, and move with their pool.
    node.osctl("ct", "stop", "c2")
    node.osctl("ct", "del", "c2")
    assert amount(records(node, "--type", "traffic"), "ct", "c2", "rx_bytes") >= sent
    kept = records(node, "--group", "/b")  # c2's alone, which changes no more
    assert {r["id"] for r in kept} == {"c2", "/b"}
    node.osctl("pool", "export", "default", "--force")
    assert records(node) == []
    node.osctl("pool", "import", str(node.state_dir / "pools" / "default"))
    assert records(node, "--group", "/b") == kept


def test_month_boundary_splits_records(make_node):
    node = make_node(consumption={"interval": INTERVAL})
    node.osctl("user", "new", "alice")
    node.osctl("ct", "new", "m1", "--user", "alice", "--template", "busybox")
    node.osctl("ct", "start", "m1")
    # The records' clock set to 5 s before a month ends, from the daemon's start.
    # Months are counted in the group's time zone (the default: Europe/Berlin).
    node.config["consumption"]["clock_start"] = "2026-11-30T23:59:55+01:00"
    node.restart()
    wait_for(lambda: amount(records(node, "--period", "2026-12", "--type", "ct"), "ct", "m1", "seconds"),
             20, message="running time in December")
    november = amount(records(node, "--period", "2026-11", "--type", "ct"), "ct", "m1", "seconds")
    december = amount(records(node, "--period", "2026-12", "--type", "ct"), "ct", "m1", "seconds")
    assert 0 < november and 0 < december < 3, (november, december)
    # The default period is the clock's month; the table shows it in human units.
    assert {r["period"] for r in records(node)} == {"2026-12"}
    table = node.osctl("consumption", "ls", "--period", "2026-11").stdout
    assert "m1" in table and "/default" in table and "s" in table.split("m1")[1], table
    csv = node.osctl("-f", "csv", "consumption", "ls", "--period", "2026-11", "--type", "ct").stdout
    assert csv.splitlines()[0].startswith("period,pool,type,object,id,group"), csv
    p = node.osctl("consumption", "ls", "--period", "2026-13", check=False)
    assert p.returncode == 2 and "YYYY-MM" in p.stderr, p.stderr


def test_vm_running_time(tinyvm_image, make_node, tmp_path):
    require(have_qemu())
    node = make_node(consumption={"interval": INTERVAL}, **vm_node_config(tmp_path))
    node.osctl("user", "new", "vmuser")
    node.osctl("vm", "new", "v1", "--user", "vmuser", "--template", "tinyvm",
               "-c", "1", "-m", "256M", "-d", "10G")

    def seconds() -> float:
        return amount(records(node, "--type", "vm"), "vm", "v1", "seconds")

    assert seconds() == 0
    node.osctl("vm", "start", "v1")
    wait_for(lambda: seconds() >= 3, 10, message="the VM's running time to grow")
    rows = [r for r in records(node, "--type", "vm") if r["object"] == "vm"]
    assert [(r["cores"], r["memory"]) for r in rows] == [(1, 256 << 20)], rows
    node.osctl("vm", "stop", "v1", "--timeout", "5")
    stopped = settled(node, seconds, "the stopped VM's running time")
    time.sleep(4 * INTERVAL)
    assert seconds() == stopped
    node.osctl("vm", "start", "v1")
    wait_for(lambda: seconds() >= stopped + 2, 10, message="the running time to grow again")
    node.osctl("vm", "kill", "v1")


def test_metrics_endpoint(make_node):
    node = make_node(metrics={"listen": "127.0.0.1:9120"})
    forwarding_on(node)
    node.osctl("user", "new", "alice")
    routed_ct(node, "c1", "/default", "192.0.2.51")
    wait_for(lambda: node.nsexec("busybox", "ping", "-c", "1", "-W", "1", "192.0.2.51",
                                 check=False).returncode == 0, message="c1 to answer")
    # A container with a disk quota on a btrfs pool: its qgroup says what it uses.
    node.osctl("pool", "install", "bq", "--backend", "btrfs", "--image", str(node.dir / "q.img"),
               "--size", "300M", "--path", str(node.dir / "bq"),
               "--id-base", str(node.id_base + 32 * 524288))
    node.osctl("user", "new", "d", "--pool", "bq")
    node.osctl("ct", "new", "d1", "--user", "bq:d", "--disk", "20M")
    from prometheus_client.parser import text_string_to_metric_families

    text = node.nsexec(sys.executable, "-c", "import urllib.request; print(urllib.request.urlopen("
                       "'http://127.0.0.1:9120/metrics', timeout=10).read().decode())").stdout
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    mine = {"pool": "default", "kind": "ct", "id": "c1", "group": "/default"}

    def value(name: str, **extra) -> float:
        return samples[(name, tuple(sorted({**mine, **extra}.items())))]

    assert value("osctld_instance_state", state="running") == 1
    assert value("osctld_instance_state", state="stopped") == 0
    assert value("osctld_instance_cpu_seconds_total") > 0
    assert value("osctld_instance_memory_bytes") > 0 and value("osctld_instance_pids") >= 1
    assert value("osctld_netif_bytes_total", netif="eth0", direction="rx") > 0
    assert value("osctld_netif_packets_total", netif="eth0", direction="tx") > 0
    assert samples[("osctld_request_duration_seconds_count", (("verb", "ct.start"),))] == 1
    quota = {"pool": "bq", "kind": "ct", "id": "d1", "group": "/default"}
    assert value("osctld_instance_disk_quota_bytes", **quota) == 20 << 20
    assert 0 < value("osctld_instance_disk_used_bytes", **quota) < 20 << 20
    assert value("osctld_instance_state", **quota, state="stopped") == 1
    assert samples[("process_resident_memory_bytes", ())] > 10 << 20
    assert samples[("osctld_operations", ())] == 0
