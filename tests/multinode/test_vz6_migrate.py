"""osctl-convert vz6 migrate: an OpenVZ Legacy container moved to an osctld
node. No OpenVZ kernel runs here: the OpenVZ node is a TEST DOUBLE
(tests/helpers/openvz.py), a namespace on the provider's network with the
files an OpenVZ node holds, a debian private area with what vzctl's Debian
scripts write (venet0 stanzas, vzquota), and a vzctl test double whose
"container" is a process in the private area that writes a heartbeat, and
its last words when stopped, while its addresses answer from that node."""

from __future__ import annotations

import json

import pytest

from tests.helpers.openvz import OpenVZNode
from tests.helpers.wait import wait_for
from tests.integration.test_debian import wait_running
from tests.integration.test_import_vz import private_area

pytestmark = [pytest.mark.root, pytest.mark.debian, pytest.mark.usefixtures("debian_template")]
V4 = ["192.0.2.70", "203.0.113.70"]
OPENVZ_IP = "198.51.100.40"


@pytest.fixture
def openvz(make_cluster, debian_template, tmp_path):
    """(cluster of one osctld node, the OpenVZ test double trusted there, its private area 101)."""
    cluster = make_cluster(1)
    ovz = OpenVZNode(tmp_path / "openvz", OPENVZ_IP)
    try:
        ovz.start(cluster.router)
        private, conf = private_area(ovz.root / "vz", debian_template, V4[0], "2001:db8::70")
        ovz.add_ct("101", conf.replace(f'IP_ADDRESS="{V4[0]} 2001:db8::70"',
                                       f'IP_ADDRESS="{V4[0]} {V4[1]} 2001:db8::70"'))
        pub = ovz.convert("key", "gen").stdout
        cluster.nodes[0].osctl("receive", "authorized-keys", "add", "ovz", input=pub)
        yield cluster, ovz, private
    finally:
        ovz.cleanup()


def test_migrate_now_boots_there_with_its_addresses_and_last_writes(openvz):
    cluster, ovz, private = openvz
    node, router = cluster.nodes[0], cluster.router
    node.osctl("user", "new", "alice")
    ovz.run("vzctl", "start", "101")
    for addr in V4:
        wait_for(lambda: router.pings(addr), message=f"{addr} to answer on the OpenVZ node")

    p = ovz.convert("vz6", "migrate", "now", "101", node.ip, "--user", "alice", timeout=300)
    assert "[sync] pass done" in p.stderr and "[transfer] started on" in p.stderr, p.stderr
    assert "mapped   IP_ADDRESS" in p.stdout  # the mapping report

    ct = node.osctl_json("ct", "show", "101")
    assert (ct["user"], ct["hostname"], ct["send_log"]) == ("alice", "vz101.example.org", None)
    assert wait_running(node, "101") in ("running", "degraded")
    # Written by the OpenVZ container after the sync pass, as it stopped: here.
    got = node.exec("101", "cat", "/root/last-words", "/root/heartbeat").stdout.split()
    assert got == ["stopped", (private / "root/heartbeat").read_text().strip()]
    for addr in V4:
        wait_for(lambda: router.pings(addr), message=f"{addr} to answer on the osctld node")
    assert V4[0] not in ovz.run("ip", "addr").stdout  # vzctl stop took them from the OpenVZ node
    files = node.exec("101", "sh", "-c", "cat /etc/network/interfaces; ls /etc/rcS.d /etc/init.d").stdout
    assert "venet0" not in files and "vzquota" not in files
    failed = node.exec("101", "systemctl", "--failed", "--plain", "--no-legend").stdout
    assert not any(w in failed for w in ("vzquota", "networking", "venet")), failed
    # cleanup: disabled on the OpenVZ node, its private area kept as a way back.
    assert 'DISABLED="yes"' in (ovz.root / "etc/vz/conf/101.conf").read_text()
    assert ovz.run("vzctl", "start", "101", check=False).returncode != 0
    assert not (ovz.root / "var/lib/osctl-convert/101.json").exists()


def test_stages_refusals_and_cancel_leave_nothing_there(openvz):
    cluster, ovz, private = openvz
    node = cluster.nodes[0]
    node.osctl("user", "new", "bob")
    node.osctl("ct", "new", "other", "--user", "bob")
    node.osctl("ct", "netif", "new", "other", "eth0")
    node.osctl("ct", "netif", "ip", "add", "other", "eth0", V4[1])
    # An address another container holds there: refused before any copy.
    p = ovz.convert("vz6", "migrate", "stage", "101", node.ip, check=False)
    assert p.returncode != 0 and V4[1] in p.stderr, p.stderr
    assert [c["id"] for c in node.osctl_json("ct", "ls")] == ["other"]
    node.osctl("ct", "del", "other")
    # Staged and synced as web1, then cancelled: nothing stays there.
    ovz.convert("vz6", "migrate", "stage", "101", node.ip, "--as-id", "web1")
    staged = node.osctl_json("ct", "show", "web1")
    assert (staged["state"], staged["user"]) == ("staged", "vz101")
    p = ovz.convert("vz6", "migrate", "stage", "101", node.ip, check=False)
    assert p.returncode != 0 and "being migrated" in p.stderr
    ovz.convert("vz6", "migrate", "sync", "101")
    assert node.osctl_json("ct", "show", "web1")["send_log"]["stage"] == "rootfs"
    p = ovz.convert("vz6", "migrate", "cleanup", "101", check=False)
    assert p.returncode != 0 and "comes after transfer" in p.stderr, p.stderr
    ovz.convert("vz6", "migrate", "cancel", "101")
    assert [c["id"] for c in node.osctl_json("ct", "ls")] == []
    assert [u["name"] for u in node.osctl_json("user", "ls")] == ["bob"]  # vz101 was made for it
    assert not list(node.dir.glob("**/ct/web1"))
    # ploop needs a mount; the OpenVZ side is as it was.
    (private / "root.hdd").mkdir()
    (private / "root.hdd/DiskDescriptor.xml").write_text("<Parallels_disk_image/>\n")
    p = ovz.convert("vz6", "migrate", "stage", "101", node.ip, check=False)
    assert p.returncode != 0 and "vzctl mount 101" in p.stderr, p.stderr
    assert json.loads(node.osctl("-j", "ct", "ls").stdout) == []


def test_ctrl_c_cancels_and_the_container_runs_on_there(openvz):
    import signal
    import subprocess
    import sys

    cluster, ovz, private = openvz
    node = cluster.nodes[0]
    subprocess.run(["dd", "if=/dev/urandom", f"of={private}/root/big", "bs=1M", "count=300",
                    "status=none"], check=True)
    ovz.run("vzctl", "start", "101")
    p = subprocess.Popen(["ip", "netns", "exec", ovz.name, sys.executable, "-m", "osctl_convert.cli",
                          "--root", str(ovz.root), "vz6", "migrate", "now", "101", node.ip],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         env={**ovz.env(), "PYTHONUNBUFFERED": "1"})
    assert p.stderr is not None
    seen = []
    for line in p.stderr:  # the first pass has begun
        seen.append(line)
        if line.startswith("[sync]"):
            break
    p.send_signal(signal.SIGINT)
    rest = p.communicate(timeout=60)[1]
    assert p.returncode == 130 and "[cancel]" in rest, "".join(seen) + rest
    assert node.osctl_json("ct", "ls") == [] and node.osctl_json("user", "ls") == []
    assert not list(node.dir.glob("**/ct/101"))
    assert "running" in ovz.run("vzctl", "status", "101").stdout
    assert not (ovz.root / "var/lib/osctl-convert/101.json").exists()
