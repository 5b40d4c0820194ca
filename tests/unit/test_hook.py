"""The LXC hook, run as LXC runs it, against a stand-in for the daemon's hook socket."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading

from osctld.runtime.lxc_config import HOOK_SCRIPT


def run_hook(tmp_path, env: dict, reply: bytes | None) -> tuple[int, dict | None, str]:
    path = str(tmp_path / "hook.sock")
    got: list[dict] = []
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        with conn, conn.makefile("rb") as f:
            got.append(json.loads(f.readline()))
            conn.sendall(reply)

    t = threading.Thread(target=serve, daemon=True)
    if reply is not None:
        t.start()
    else:
        srv.close()
    p = subprocess.run([sys.executable, "-I", "-S", str(HOOK_SCRIPT), path, "pool1", "ignored",
                        "lxc", "ignored"], env={**os.environ, **env}, capture_output=True,
                       text=True, timeout=30)
    if reply is not None:
        t.join(5)
        srv.close()
    return p.returncode, (got[0] if got else None), p.stderr


def test_start_host_reports_pool_name_hook_and_pid(tmp_path):
    env = {"LXC_NAME": "c1", "LXC_HOOK_TYPE": "start-host", "LXC_PID": "4242"}
    rc, msg, _ = run_hook(tmp_path, env, b"ok\n")
    assert rc == 0
    assert msg == {"pool": "pool1", "ct": "c1", "hook": "start-host", "pid": 4242}


def test_post_stop_reports_the_target(tmp_path):
    env = {"LXC_NAME": "c1", "LXC_HOOK_TYPE": "post-stop", "LXC_TARGET": "reboot"}
    rc, msg, _ = run_hook(tmp_path, env, b"ok\n")
    assert rc == 0
    assert msg == {"pool": "pool1", "ct": "c1", "hook": "post-stop", "target": "reboot"}


def test_odd_characters_arrive_intact_and_a_bad_pid_is_left_out(tmp_path):
    name = 'we"ird\\na\tme\u00e9'
    env = {"LXC_NAME": name, "LXC_HOOK_TYPE": "post-stop", "LXC_PID": "12x"}
    rc, msg, _ = run_hook(tmp_path, env, b"ok\n")
    assert rc == 0
    assert msg == {"pool": "pool1", "ct": name, "hook": "post-stop"}


def test_a_refusal_fails_the_hook(tmp_path):
    rc, _, err = run_hook(tmp_path, {"LXC_NAME": "c1", "LXC_HOOK_TYPE": "start-host"},
                          b"error no network\n")
    assert rc == 1
    assert "refused start-host of pool1:c1" in err


def test_no_daemon_is_no_failure(tmp_path):
    rc, msg, _ = run_hook(tmp_path, {"LXC_NAME": "c1", "LXC_HOOK_TYPE": "post-stop"}, None)
    assert (rc, msg) == (0, None)
