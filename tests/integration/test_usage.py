"""What an operator looks at on a running node, through osctl: a container's
processes, which container a host process is in, what each uses, waiting for
a state, and the log that says why a start failed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.helpers.node import OSCTL
from tests.helpers.wait import wait_for


def _running(node, *ids: str) -> dict:
    user = node.osctl_json("user", "new", "alice")
    for ct in ids:
        node.osctl("ct", "new", ct, "--user", "alice")
        node.osctl("ct", "start", ct)
    return user


def _sleeper(node, ct: str) -> int:
    """The host PID of a `sleep 600` started inside ``ct``."""
    node.exec(ct, "sh", "-c", "sleep 600 >/dev/null 2>&1 </dev/null &")
    return wait_for(lambda: next((p["host_pid"] for p in node.osctl_json("ct", "ps", ct)
                                  if p["command"] == "sleep 600"), None), 10, 0.1, "sleep inside")


def test_ps_lists_processes_with_host_and_container_ids_and_pid_finds_the_container(node):
    user = _running(node, "u1")
    init = node.osctl_json("ct", "show", "u1")["init_pid"]
    host_pid = _sleeper(node, "u1")
    procs = {p["host_pid"]: p for p in node.osctl_json("ct", "ps", "u1")}
    assert procs[init]["ct_pid"] == 1
    assert (procs[init]["host_uid"], procs[init]["ct_uid"]) == (user["root_uid"], 0)
    sleeper = procs[host_pid]
    assert sleeper["ct_pid"] not in (None, host_pid) and sleeper["ct_uid"] == 0
    # The host's own view agrees: that PID is the sleep, as the mapped root.
    assert Path(f"/proc/{host_pid}/cmdline").read_bytes() == b"sleep\x00600\x00"
    assert "sleep 600" in node.osctl("ct", "ps", "u1").stdout

    res = node.osctl_json("ct", "pid", str(host_pid), str(init))
    assert [(r["kind"], r["pool"], r["id"]) for r in res] == [("ct", "default", "u1")] * 2
    # A process of no container (this test's own): named as none, exit 1.
    p = node.osctl("ct", "pid", str(host_pid), str(os.getpid()), check=False)
    assert p.returncode == 1 and "u1" in p.stdout, p.stdout
    assert node.osctl("ct", "pid", "notapid", check=False).returncode == 2


def test_show_and_ls_report_usage_and_top_ranks_the_busy_one(node):
    _running(node, "busy", "idle")
    node.exec("busy", "sh", "-c", "while :; do :; done >/dev/null 2>&1 </dev/null &")
    time.sleep(1.2)
    usage = node.osctl_json("ct", "show", "busy")["usage"]
    assert usage["cpu_seconds"] > 0.5 and usage["memory"] > 0 and usage["pids"] >= 2
    assert 1 <= usage["uptime"] < 120
    node.osctl("ct", "kill", "idle")
    assert node.osctl_json("ct", "show", "idle")["usage"] is None
    node.osctl("ct", "start", "idle")

    # Usage columns only when asked for: they cost reads per container.
    assert "memory_used" not in node.osctl_json("ct", "ls")[0]
    rows = {r["id"]: r for r in node.osctl_json("-o", "id,memory_used,pids,uptime", "ct", "ls")}
    assert rows["busy"]["memory_used"] > 0 and rows["busy"]["pids"] >= 2
    # CPU % over the meter's last interval (0.5 s on this node): at once, no wait.
    rows = wait_for(lambda: {r["id"]: r for r in node.osctl_json("ct", "ls", "-o", "id,cpu_percent")},
                    5, message="a CPU % of both", until=lambda r: None not in
                    (r["busy"]["cpu_percent"], r["idle"]["cpu_percent"]))
    assert rows["busy"]["cpu_percent"] > 50 > rows["idle"]["cpu_percent"], rows
    assert node.osctl_json("ct", "show", "busy")["usage"]["cpu_percent"] > 50
    table = node.osctl("-o", "id,pids", "ct", "ls").stdout
    assert "busy" in table and "PIDS" in table.upper()

    top = node.osctl_json("ct", "top", "--once", "-i", "1")
    assert [r["id"] for r in top] == ["busy", "idle"], top  # sorted by CPU %
    assert top[0]["cpu_percent"] > 50 > top[1]["cpu_percent"]
    by_mem = node.osctl_json("ct", "top", "--once", "-i", "1", "-s", "id")
    assert [r["id"] for r in by_mem] == ["busy", "idle"]


def test_start_wait_is_idempotent_and_wait_follows_the_state(node):
    node.osctl("user", "new", "alice")
    node.osctl("ct", "new", "w1", "--user", "alice")
    t0 = time.monotonic()
    ct = node.osctl_json("ct", "start", "w1", "--wait")
    assert ct["state"] == "running" and time.monotonic() - t0 < 30
    assert node.exec("w1", "true").returncode == 0
    # A second start changes nothing, says so, and succeeds.
    p = node.osctl("ct", "start", "w1")
    assert p.stdout == "w1: running; container w1 is already running\n", p.stdout  # exit 0, a note
    assert node.osctl_json("ct", "start", "w1")["note"] == "container w1 is already running"
    assert node.osctl_json("ct", "wait", "w1", "up")["state"] == "running"
    # Not stopped within a second: busy (exit 5), nothing changed.
    p = node.osctl("ct", "wait", "w1", "stopped", "-t", "1", check=False)
    assert p.returncode == 5 and "not stopped" in p.stderr, p.stderr
    # A wait of over a second says what it waits for, before it ends.
    p = node.osctl("ct", "wait", "w1", "stopped", "-t", "2", check=False)
    assert p.returncode == 5, p.stderr
    assert p.stderr.startswith("[wait] waiting up to 2 s for container w1: it to be stopped\n"), \
        p.stderr
    stop = subprocess.Popen([OSCTL, "--socket", str(node.socket), "ct", "stop", "w1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert node.osctl_json("ct", "wait", "w1", "stopped", "-t", "30")["state"] == "stopped"
    finally:
        stop.wait(30)
    assert node.osctl("ct", "wait", "w1", "sleeping", check=False).returncode == 2


def test_log_starts_with_why_the_last_start_failed(node):
    node.osctl("user", "new", "alice")
    node.osctl("ct", "new", "l1", "--user", "alice")
    node.osctl("ct", "netif", "new", "l1", "eth1", "--type", "bridge", "--link", "nobr9")
    assert node.osctl("ct", "start", "l1", check=False, timeout=120).returncode == 6
    res = node.osctl_json("ct", "log", "l1")
    assert "failed to start" in res["last_start_error"] and "nobr9" in res["last_start_error"]
    assert "lxc-start l1" in res["log"]  # LXC's own lines follow
    text = node.osctl("ct", "log", "l1", "-n", "5").stdout
    assert text.startswith("last start failed: container l1 failed to start")
    assert len(text.splitlines()) <= 6
    # Kept in the pool, not the run directory: a reboot (LXC's part of the
    # run directory gone with the daemon) leaves both; the log is the pool's.
    node.kill(signal.SIGTERM)
    shutil.rmtree(node.run_dir / "lxc")
    node.start()
    after = node.osctl_json("ct", "log", "l1")
    assert after["last_start_error"] == res["last_start_error"]
    assert "lxc-start l1" in after["log"]
    pool_path = Path(node.osctl_json("pool", "show", "default")["path"])
    assert (pool_path / "log" / "ct" / "l1.log").is_file()
    # Once it starts, the failure is history.
    node.osctl("ct", "netif", "del", "l1", "eth1")
    node.osctl("ct", "start", "l1")
    assert node.osctl_json("ct", "log", "l1")["last_start_error"] is None
    node.osctl("ct", "stop", "l1", "--timeout", "0")
    node.osctl("ct", "del", "l1")
    assert not (pool_path / "log" / "ct" / "l1.log").exists()  # the log goes with it


def test_stop_with_no_timeout_kills_at_once_and_returns_stopped(node):
    _running(node, "s1")
    init = node.osctl_json("ct", "show", "s1")["init_pid"]
    t0 = time.monotonic()
    assert node.osctl_json("ct", "stop", "s1", "--timeout", "0")["state"] == "stopped"
    assert time.monotonic() - t0 < 10
    assert not Path(f"/proc/{init}").exists()
    time.sleep(1)  # and it stays stopped (busybox init reboots on the halt signal's kin)
    assert node.osctl_json("ct", "show", "s1")["state"] == "stopped"
