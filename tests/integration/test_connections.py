"""A connection's bounds and its end, seen from outside.

A client that pipelines and never reads costs the daemon a bounded amount
and holds up no one else; a client that sends a burst and leaves is not
served for its own sake; what a gone caller ran inside a container ends;
osctl run by another user is told `denied`.
"""

from __future__ import annotations

import os
import pty
import select
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from osctl import protocol
from tests.helpers.node import OSCTL
from tests.helpers.wait import wait_for

from .test_bad_requests import Raw


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def daemon_pid(node) -> int:
    pid = node.proc.pid  # nsenter executes osctld in its own place
    assert "osctld" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    return pid


def requests(first: int, count: int) -> bytes:
    return b"".join(protocol.encode(protocol.request(i, "daemon.status"))
                    for i in range(first, first + count))


class Latency(threading.Thread):
    """Another client asking daemon.status every so often: the slowest answer."""

    def __init__(self, node):
        super().__init__(daemon=True)
        self.node = node
        self.worst = 0.0
        self.count = 0
        self.failed: Exception | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                t0 = time.monotonic()
                with self.node.client() as c:
                    c.sock.settimeout(30)
                    c.call("daemon.status")
                self.worst = max(self.worst, time.monotonic() - t0)
                self.count += 1
                self.stop.wait(0.2)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.failed = e

    def __enter__(self) -> "Latency":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.join(60)


def pipeline(sock: socket.socket, seconds: float, total: int) -> int:
    """Send up to ``total`` daemon.status requests for ``seconds``, reading
    nothing; how many bytes the kernel took."""
    sock.setblocking(False)
    sent = taken = 0
    pending = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (pending or sent < total):
        if not pending:
            n = min(2000, total - sent)
            pending = requests(sent + 1, n)
            sent += n
        _, writable, _ = select.select([], [sock], [], 0.2)
        if writable:
            try:
                n = sock.send(pending)
            except BlockingIOError:
                continue
            pending = pending[n:]
            taken += n
    return taken


def test_a_client_that_never_reads_costs_a_bounded_amount_and_blocks_no_one(node):
    pid = daemon_pid(node)
    before = rss_kib(pid)
    hog = Raw(node.socket)
    with Latency(node) as other:
        taken = pipeline(hog.sock, seconds=12, total=200_000)
        grown = (rss_kib(pid) - before) // 1024
    assert other.failed is None, other.failed
    print(f"the daemon took {taken} bytes of requests; it grew {grown} MiB; "
          f"slowest other daemon.status {other.worst:.2f} s of {other.count}")
    assert grown < 100
    assert other.count >= 10 and other.worst < 2.0
    # It is served as far as it reads.
    hog.sock.setblocking(True)
    hog.sock.settimeout(10)
    assert "ok" in hog.read()
    hog.close()


def test_a_burst_then_hang_up_does_not_stall_the_daemon(node):
    burst = Raw(node.socket)
    pipeline(burst.sock, seconds=3, total=100_000)
    burst.close()
    with Latency(node) as other:
        time.sleep(3)
    assert other.failed is None, other.failed
    print(f"after the burst: slowest daemon.status {other.worst:.2f} s of {other.count}")
    assert other.worst < 1.0
    assert "requests it sent were not started" in node.log.read_text()


# --- a gone caller's exec is ended --------------------------------------------------

@pytest.fixture
def ct_node(node):
    node.osctl("user", "new", "u")
    node.osctl("ct", "new", "c1", "--user", "u")
    node.osctl("ct", "start", "c1")
    return node


def sleepers(node, ct: str = "c1") -> list[int]:
    """PIDs (on the host) of `sleep 3600` in the container's PID namespace."""
    init = node.osctl_json("ct", "show", ct)["init_pid"]
    ns = os.readlink(f"/proc/{init}/ns/pid")
    out = []
    for p in Path("/proc").iterdir():
        try:
            if (p / "cmdline").read_bytes() == b"sleep\x003600\x00" and os.readlink(p / "ns/pid") == ns:
                out.append(int(p.name))
        except (OSError, ValueError):
            pass
    return out


def exec_request(kind: str) -> tuple[dict, list[int], list[int]]:
    """A ct.exec of `sleep 3600` and the descriptors to pass (and to close after)."""
    req = protocol.request(1, "ct.exec", {"id": "c1", "argv": ["sleep", "3600"]})
    if kind == "output returned":
        return req, [], []
    r, w = os.pipe()
    if kind == "descriptors":
        fds = [r, w, w]
    elif kind == "output on a terminal":
        master, slave = pty.openpty()
        fds, r = [r, slave, slave], master  # stdin a pipe: the daemon copies the output
    else:  # "a terminal"
        master, slave = pty.openpty()
        fds, r = [slave, slave, slave], master
    req["fds"] = 3
    return req, fds, [r, w, *set(fds)]


@pytest.mark.parametrize("kind", ["output returned", "descriptors", "output on a terminal",
                                  "a terminal"])
def test_an_exec_whose_caller_is_gone_is_ended(ct_node, kind):
    node = ct_node
    req, fds, ours = exec_request(kind)
    r = Raw(node.socket)
    data = protocol.encode(req)
    socket.send_fds(r.sock, [data], fds) if fds else r.send(data)
    wait_for(lambda: sleepers(node), 10, message="the sleep to start")
    r.close()
    t0 = time.monotonic()
    wait_for(lambda: sleepers(node), 10, message="sleep 3600 to end", until=lambda pids: not pids)
    print(f"{kind}: ended {time.monotonic() - t0:.2f} s after its caller left")
    for fd in set(ours):
        os.close(fd)
    assert node.osctl_json("ct", "show", "c1")["state"] == "running"


def test_a_mutating_operation_of_a_gone_caller_finishes(ct_node):
    node = ct_node
    r = Raw(node.socket)
    r.send(protocol.request(1, "ct.stop", {"id": "c1", "timeout": 30}))
    time.sleep(0.3)
    r.close()
    # The daemon is not stuck on the lost peer: other clients are served at once.
    t0 = time.monotonic()
    assert node.osctl_json("status")["containers"] == 1
    assert time.monotonic() - t0 < 5
    wait_for(lambda: node.osctl_json("ct", "show", "c1")["state"], message="c1 to stop",
             until=lambda state: state == "stopped")
    assert node.osctl_json("ct", "start", "c1")["state"] == "running"


# --- not root ---------------------------------------------------------------------

def osctl_as_nobody(node, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           OSCTL, "--socket", str(node.socket), *args],
                          capture_output=True, text=True, timeout=60)


def test_osctl_as_another_user_is_denied(node):
    # The socket is root's (0600): connect(2) itself is refused.
    p = osctl_as_nobody(node, "status")
    assert (p.returncode, p.stdout) == (7, ""), p
    assert p.stderr.startswith("osctl: denied:") and "root" in p.stderr, p.stderr
    # Opened to all, the daemon refuses at the door, and logs who knocked.
    for d in (node.dir, node.run_dir):
        d.chmod(0o755)
    node.socket.chmod(0o666)
    try:
        p = osctl_as_nobody(node, "status")
    finally:
        node.socket.chmod(0o600)
    assert (p.returncode, p.stdout) == (7, ""), p
    assert p.stderr.startswith("osctl: denied:") and "root" in p.stderr, p.stderr
    wait_for(lambda: "uid=65534>: refused, not root" in node.log.read_text(), 5,
             message="the refusal in the log")
