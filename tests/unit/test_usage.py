"""Reading a server's processes and logs from /proc-like tables."""

from __future__ import annotations

from pathlib import Path

from osctld.model.idmap import MapEntry
from osctld.runtime import logtail, usage

ROOT = "/osctl-node1"


def _proc(tmp_path: Path, pid: int, cgroup: str, status: str = "", cmdline: bytes = b"") -> Path:
    d = tmp_path / str(pid)
    d.mkdir(parents=True)
    (d / "cgroup").write_text(cgroup)
    (d / "status").write_text(status)
    (d / "cmdline").write_bytes(cmdline)
    return tmp_path


def test_owner_is_read_from_the_cgroup_path_below_the_daemons_root(tmp_path):
    cases = {
        10: ("12:pids:/osctl-node1/pool.default/group.prod/group.web/ct.web1/ns/init.scope\n",
             usage.Owner("ct", "default", "web1", "/prod/web")),
        11: ("0::/svc/osctl-node1/pool.fast/vm.vm1\n", usage.Owner("vm", "fast", "vm1", "/")),
        12: ("4:memory:/osctl-node1/monitor/web2@default\n", usage.Owner("ct", "default", "web2", "")),
        # Another daemon's (another root), and a host service: none of ours.
        13: ("12:pids:/osctl-node2/pool.default/ct.x\n", None),
        14: ("0::/system.slice/sshd.service\n", None),
    }
    for pid, (cgroup, _) in cases.items():
        _proc(tmp_path, pid, cgroup)
    for pid, (_, want) in cases.items():
        assert usage.owner(pid, ROOT, tmp_path) == want, pid
    assert usage.owner(99, ROOT, tmp_path) is None  # exited


def test_a_process_is_shown_with_its_ids_inside(tmp_path):
    status = "Name:\tsleep\nUid:\t100033\t100033\t100033\t100033\nNSpid:\t4242\t17\n"
    _proc(tmp_path, 4242, "", status, b"sleep\x00600\x00")
    uid_map = [MapEntry(0, 100000, 65536)]
    assert usage.process(4242, uid_map, tmp_path) == usage.Process(4242, 17, 100033, 33, "sleep 600")
    # A kernel thread has no cmdline; a helper outside the namespace and map.
    _proc(tmp_path, 7, "", "Name:\tkworker\nUid:\t0\t0\t0\t0\nNSpid:\t7\n")
    assert usage.process(7, uid_map, tmp_path) == usage.Process(7, None, 0, None, "[kworker]")
    assert usage.process(8, uid_map, tmp_path) is None


def test_tail_reads_the_last_lines_from_the_end(tmp_path):
    log = tmp_path / "lxc.log"
    log.write_text("".join(f"line {i}\n" for i in range(1000)))
    assert logtail.tail(log, 2) == "line 998\nline 999"
    # A window that cuts a line drops its partial start.
    assert logtail.tail(log, 5000, window=20).splitlines() == ["line 998", "line 999"]
    assert logtail.tail(tmp_path / "none", 5) == ""


def test_top_sorts_numbers_largest_first_and_unknowns_last():
    from osctl.cli.ct import _top_key

    rows = [{"id": "a", "cpu_percent": None}, {"id": "b", "cpu_percent": 3.5},
            {"id": "c", "cpu_percent": 80.0}]
    assert [r["id"] for r in sorted(rows, key=lambda r: _top_key(r["cpu_percent"]))] == ["c", "b", "a"]
    assert [r["id"] for r in sorted(reversed(rows), key=lambda r: _top_key(r["id"]))] == ["a", "b", "c"]
