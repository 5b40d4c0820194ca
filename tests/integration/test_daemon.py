"""The daemon itself: its configuration, SIGTERM, history and the event stream."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from osctl.protocol import OsctlError

from tests.helpers.node import BLOCK, OSCTL, OSCTLD
from tests.helpers.wait import wait_for


def run_osctld(node, config: dict | str) -> subprocess.CompletedProcess:
    cfg = node.dir / "bad.yml"
    cfg.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    return subprocess.run([*node.netns_argv(), OSCTLD, "--config", str(cfg)],
                          capture_output=True, text=True, timeout=30)


def test_bad_configuration_is_refused_clearly(node):
    base = {"state_dir": str(node.dir / "other"), "run_dir": str(node.dir / "other-run")}
    cases = [
        ({**base, "bogus_key": 1}, "unknown keys: bogus_key"),
        ({**base, "log_level": "loud"}, "log_level must be one of"),
        ({**base, "autostart_parallelism": 0}, "autostart_parallelism must be at least 1"),
        ({**base, "default_pool": {"name": "p", "colour": "red"}}, "default_pool: unknown keys: colour"),
        ("- a\n- list\n", "expected a mapping"),
        ("state_dir: [unclosed\n", "bad configuration"),
    ]
    for config, words in cases:
        p = run_osctld(node, config)
        assert p.returncode == 2, (config, p.stderr)
        assert p.stderr.startswith("osctld: bad configuration:") and words in p.stderr, (config, p.stderr)
    p = subprocess.run([OSCTLD, "--config", str(node.dir / "missing.yml")], capture_output=True, text=True)
    assert p.returncode == 2 and "missing.yml" in p.stderr
    assert not (node.dir / "other").exists()  # nothing was started or made
    # The node's own daemon is untouched.
    assert node.osctl_json("status")["pid"] == node.proc.pid


def test_sigterm_leaves_containers_running(node):
    node.osctl("user", "new", "u")
    for ct in ("s1", "s2"):
        node.osctl("ct", "new", ct, "--user", "u", "--start")
    before = {c["id"]: c["init_pid"] for c in node.osctl_json("ct", "ls")}
    node.proc.send_signal(signal.SIGTERM)
    assert node.proc.wait(30) == 0
    assert not node.socket.exists()
    for pid in before.values():
        assert Path(f"/proc/{pid}").exists(), "a container died with the daemon"
    assert "shutting down; containers and VMs keep running" in node.log.read_text()
    # Logs are lines journald reads a priority from.
    assert all(ln.startswith("<") for ln in node.log.read_text().splitlines() if ln)
    node.start()
    after = {c["id"]: (c["state"], c["init_pid"]) for c in node.osctl_json("ct", "ls")}
    assert after == {ct: ("running", pid) for ct, pid in before.items()}
    assert node.exec("s2", "true").returncode == 0


def test_shutdown_takes_the_node_down_and_it_comes_back(node):
    """osctl shutdown: every container stopped, lxcfs and the statfs proxy
    gone with their mount and socket, the daemon gone; a new daemon starts
    the autostart ones again."""
    node.osctl("user", "new", "u")
    for ct in ("d1", "d2"):
        node.osctl("ct", "new", ct, "--user", "u", "--start")
    node.osctl("ct", "set", "autostart", "d1", "on")
    inits = [c["init_pid"] for c in node.osctl_json("ct", "ls")]
    helpers = [node.lxcfs_pid(), node.statfs_proxy_pid()]
    assert None not in helpers

    shown = node.osctl_json("shutdown", "--timeout", "10")
    assert shown["stopped"] == ["default:d1", "default:d2"]
    assert node.proc.wait(30) == 0 and not node.socket.exists()
    for pid, program in zip(inits + helpers, ["init", "init", "lxcfs", "statfs_proxy"]):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        assert not cmdline, f"{program} ({pid}) still runs: {cmdline!r}"
    assert f" {node.run_dir / 'lxcfs'} " not in Path("/proc/self/mountinfo").read_text()
    assert not (node.run_dir / "statfs-proxy.sock").exists()

    node.start()
    wait_for(lambda: node.osctl_json("ct", "show", "d1")["state"] == "running", 30,
             message="autostart to start d1 again")
    assert node.osctl_json("ct", "show", "d2")["state"] == "stopped"
    assert node.lxcfs_pid() is not None and node.statfs_proxy_pid() is not None


def test_history_records_state_changing_commands(node):
    node.osctl("user", "new", "u")
    node.osctl("ct", "new", "h1", "--user", "u")
    node.osctl("ct", "start", "h1")
    node.osctl("ct", "show", "h1")  # not state-changing: not in the history
    node.osctl("ct", "del", "h1", check=False)  # refused: it runs
    node.osctl("ct", "stop", "h1")
    rows = node.osctl_json("history", "-n", "0")
    assert [(r["cmd"], r["result"]) for r in rows] == [
        ("user.new", "ok"), ("ct.new", "ok"), ("ct.start", "ok"), ("ct.del", "error"), ("ct.stop", "ok")]
    assert rows[1]["args"]["id"] == "h1" and rows[1]["uid"] == 0 and rows[1]["pool"] == "default"
    assert "is running: stop it" in rows[3]["error"]
    assert [r["cmd"] for r in node.osctl_json("history", "-n", "2")] == ["ct.del", "ct.stop"]
    table = node.osctl("history").stdout.splitlines()
    assert table[0].split()[:4] == ["TIME", "POOL", "ACCOUNT", "COMMAND"] and len(table) == 6
    assert table[2].split()[2:6] == ["default", "root", "ct.new", "h1"]
    pool = Path(node.osctl_json("pool", "show", "default")["path"])
    lines = (pool / "log" / "history.jsonl").read_text().splitlines()
    assert [json.loads(ln)["cmd"] for ln in lines] == [r["cmd"] for r in rows]


class Lines:
    """Lines of a child's stdout, read without Python's buffering (select sees them all)."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen([OSCTL, *args], stdout=subprocess.PIPE)
        self.buf = b""

    def next(self, timeout: float) -> str | None:
        deadline = time.time() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.time()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                return None
            data = os.read(self.proc.stdout.fileno(), 65536)
            if not data:
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.proc.stdout.close()


def test_monitor_prints_events(node):
    node.osctl("user", "new", "u")
    node.osctl("ct", "new", "m1", "--user", "u")
    mon = Lines("--socket", str(node.socket), "-j", "monitor")
    events: list[dict] = []
    nudges = iter(range(1000))

    def read_until(pred, timeout=20):
        def step() -> dict | None:
            line = mon.next(0.5)
            if line is None:
                if not events:  # until the subscription is in place, make events
                    node.call("user.new", name=f"nudge{next(nudges)}")
                return None
            events.append(json.loads(line))
            return events[-1] if pred(events[-1]) else None

        return wait_for(step, timeout, 0, lambda: f"the monitor to show it; it showed {events}")

    try:
        read_until(lambda ev: ev["type"] == "add" and ev["object"] == "user")
        node.osctl("ct", "start", "m1")
        ev = read_until(lambda ev: ev["type"] == "state" and ev["state"] == "running")
        assert ev["id"] == "m1" and ev["pool"] == "default" and ev["init_pid"] > 1
        node.osctl("ct", "stop", "m1")
        read_until(lambda ev: ev["type"] == "state" and ev["state"] == "stopped")
        assert any(ev["type"] == "command" and ev["cmd"] == "ct.start" and ev["phase"] == "done"
                   for ev in events)
    finally:
        mon.close()

    # The table form of the same stream, with a type filter.
    mon = Lines("--socket", str(node.socket), "monitor", "--type", "state")
    try:
        seen: list[str] = []
        node.call("ct.start", id="m1")

        def running() -> list[str]:
            line = mon.next(1)
            if line:
                seen.append(line)
            elif not seen:  # not subscribed yet when it started: again
                node.call("ct.stop", id="m1")
                node.call("ct.start", id="m1")
            return [ln for ln in seen if "state=running" in ln]

        first = wait_for(running, 20, 0, lambda: f"state=running in the table; it showed {seen}")[0]
        assert first.split()[1:4] == ["state", "ct", "m1"], seen
        assert all(ln.split()[1] == "state" for ln in seen)
    finally:
        mon.close()


def test_events_and_history_name_the_object_the_arguments_and_who_acted(node):
    node.osctl("pool", "install", "p2", "--id-base", str(node.id_base + 32 * BLOCK))
    node.osctl("user", "new", "u")
    node.osctl("user", "new", "u2", "--pool", "p2")
    node.osctl("ct", "new", "e1", "--user", "u")
    node.osctl("ct", "new", "e2", "--user", "p2:u2")
    bad = node.osctl("monitor", "--type", "stat", check=False)
    assert bad.returncode == 2 and "stat" in bad.stderr
    with pytest.raises(OsctlError) as e:
        node.call("event.subscribe", types=["stat"])
    assert e.value.code == "invalid" and "known: state" in e.value.message

    # Only what is about e2, in pool p2: e1's changes never show.
    mon = Lines("--socket", str(node.socket), "-j", "monitor", "--pool", "p2", "--id", "e2")
    events: list[dict] = []
    try:
        def done() -> dict | None:
            line = mon.next(0.5)
            if line is None:  # until the subscription shows it, make events (e1's never show)
                node.call("ct.set", id="e1", hostname="e1")
                node.osctl("ct", "set", "memory", "e2", "2G")
                return None
            events.append(json.loads(line))
            ev = events[-1]
            return ev if ev["type"] == "command" and ev["phase"] == "done" and "limits" in ev["args"] \
                else None

        ev = wait_for(done, 20, 0, lambda: f"ct.set of e2's limits; the monitor showed {events}")
        assert (ev["cmd"], ev["object"], ev["id"], ev["pool"], ev["account"], ev["args"]) == \
            ("ct.set", "ct", "e2", "p2", "root", {"id": "e2", "limits": {"memory": "2G"}})
        assert {(e["pool"], e["id"]) for e in events} == {("p2", "e2")}
        change = events[-2]  # published by the command, before it is done
        assert (change["type"], change["object"], change["settings"]) == ("change", "ct", ["limits"])
    finally:
        mon.close()

    # The table form reads as the command was asked for.
    mon = Lines("--socket", str(node.socket), "monitor", "--type", "command", "--object", "ct")
    try:
        seen: list[str] = []

        def shown() -> list[str]:
            line = mon.next(0.5)
            if line:
                seen.append(line)
            else:
                node.osctl("ct", "set", "memory", "e1", "1G")
            return [ln for ln in seen if "done   ct.set e1 memory=1G" in ln]

        assert "account=root" in wait_for(shown, 20, 0, lambda: f"ct.set in the table; it showed {seen}")[0]
    finally:
        mon.close()

    # The history of both pools, merged; of one object; since a time; by root.
    rows = node.osctl_json("history", "-n", "0")
    assert {r["pool"] for r in rows} == {"default", "p2"}
    assert [r["time"] for r in rows] == sorted(r["time"] for r in rows)
    e2 = node.osctl_json("history", "e2", "-n", "0")
    assert [r["cmd"] for r in e2][0] == "ct.new" and {r["id"] for r in e2} == {"e2"}
    assert all(r["pool"] == "p2" and r["object"] == "ct" and r["account"] == "root" for r in e2)
    assert node.osctl_json("history", "e2", "--since", "2000-01-01", "--user", "root", "-n", "0") == e2
    assert node.osctl_json("history", "--since", "1s", "--user", "nobody-here", "-n", "0") == []
    table = node.osctl("history", "e2", "-n", "1").stdout.splitlines()
    assert table[1].split()[2:] == ["p2", "root", "ct.set", "e2", "memory=2G", "ok"], table
    bad = node.osctl("history", "--since", "yesterday", check=False)
    assert bad.returncode == 2 and "ISO date" in bad.stderr


def test_a_second_daemon_on_the_same_run_directory_is_refused(node):
    node.osctl("user", "new", "dora")
    node.osctl("ct", "new", "d1", "--user", "dora")
    node.osctl("ct", "start", "d1")
    p = run_osctld(node, node.config)
    assert p.returncode == 1
    assert "another osctld runs with run directory" in p.stderr
    # The first one still answers and still hears its containers' hooks (the
    # second did not replace the hook socket): a stop behind its back shows.
    assert node.osctl_json("status")["pid"] == node.proc.pid
    node.lxc("lxc-stop", "default", "d1", "-k")
    wait_for(lambda: node.osctl_json("ct", "show", "d1")["state"], 10, 0.1, "d1 to be seen stopped",
             until=lambda state: state == "stopped")
