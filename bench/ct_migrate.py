#!/usr/bin/env python3
"""Container downtime and transfer time of ``ct send`` between two nodes.

Two test nodes and their router (tests/helpers/multinode.py: each node its
own namespace, osctld and sshd). On node A, a running container (the debian
template, or --template) with a public address and a 1 GiB file of random
data in its rootfs; then, timed as one transfer: ``ct send config``,
``rootfs`` (the full copy while it runs), a 10 MiB change written inside,
``sync``, ``state``, ``cleanup``. Meanwhile the router namespace pings the
container's address every 10 ms; the downtime is the gap between the last
answer (from A) and the first answer after it (from B). Both for btrfs
pools (btrfs send -p) and dir pools (rsync). Aim (issue 10): under 1 s of
downtime on btrfs, the rest of the transfer while the container runs.

    sudo .venv/bin/python bench/ct_migrate.py [--backend btrfs dir] [--size-mib 1024]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import compile_sources, machine, require_root, table, write_result  # noqa: E402

from tests.helpers.multinode import Cluster, btrfs_pool  # noqa: E402
from tests.helpers.wait import wait_for  # noqa: E402

ADDR = "192.0.2.50"
INTERVAL = 0.01


def pinger(addr: str) -> None:
    """Ping ``addr`` every 10 ms; print the time of each answer (run in the
    router's namespace, until killed)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setblocking(False)
    ident, seq, nxt = os.getpid() & 0xFFFF, 0, time.monotonic()
    while True:
        now = time.monotonic()
        if now >= nxt:
            seq = (seq + 1) & 0xFFFF
            header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            csum = _checksum(header)
            sock.sendto(struct.pack("!BBHHH", 8, 0, csum, ident, seq), (addr, 0))
            nxt += INTERVAL
        try:
            data = sock.recv(1024)
            if data[20] == 0 and struct.unpack("!H", data[24:26])[0] == ident:
                print(f"{time.time():.4f}", flush=True)
        except BlockingIOError:
            time.sleep(0.001)


def _checksum(data: bytes) -> int:
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF


@contextlib.contextmanager
def pinging(router, addr: str):
    """``addr`` pinged from ``router``'s namespace every 10 ms while the
    block runs; the list yielded holds the answers' times after it."""
    answers: list[float] = []
    ping = subprocess.Popen(["ip", "netns", "exec", router.name, sys.executable,
                             str(Path(__file__).resolve()), "--pinger", addr],
                            stdout=subprocess.PIPE, text=True)
    try:
        yield answers
    finally:
        ping.terminate()
        out, _ = ping.communicate()
        answers += [float(x) for x in out.split()]


def longest_gap(answers: list[float]) -> tuple[float, float, float]:
    """(the longest time without an answer, the answer before it, the one after)."""
    gaps = [(y - x, x, y) for x, y in zip(answers, answers[1:])]
    return max(gaps) if gaps else (float("nan"), 0.0, 0.0)


def one(backend: str, template: str, size_mib: int) -> dict:
    cluster = Cluster(2, {"log_level": "info"})
    try:
        cluster.start()
        a, b = cluster.nodes
        cluster.trust(a, b, "a")
        src = btrfs_pool(a, size="4G") if backend == "btrfs" else "default"
        dst = btrfs_pool(b, size="4G") if backend == "btrfs" else "default"
        a.osctl("user", "new", "u", "--pool", src)
        a.osctl("ct", "new", "m1", "--user", f"{src}:u", "--template", template, timeout=600)
        a.osctl("ct", "netif", "new", "m1", "eth0")
        a.osctl("ct", "netif", "ip", "add", "m1", "eth0", ADDR)
        rootfs = Path(a.osctl_json("ct", "show", "m1")["rootfs"])
        subprocess.run(["dd", "if=/dev/urandom", f"of={rootfs}/root/big", "bs=1M",
                        f"count={size_mib}", "status=none"], check=True)
        a.osctl("ct", "start", "m1", "--wait")
        wait_for(lambda: cluster.router.pings(ADDR), 60, message="the container to answer on A")
        times: dict[str, float] = {}
        with pinging(cluster.router, ADDR) as answers:
            t0 = time.time()
            for stage in ("config", "rootfs"):
                a.osctl("ct", "send", stage, "m1", *([b.dest, "--to-pool", dst] if stage == "config" else []))
                times[stage] = time.time()
            a.exec("m1", "dd", "if=/dev/urandom", "of=/root/change", "bs=1M", "count=10")
            times["change"] = time.time()
            a.osctl("ct", "send", "sync", "m1")
            times["sync"] = time.time()
            a.osctl("ct", "send", "state", "m1")
            times["state"] = time.time()
            a.osctl("ct", "send", "cleanup", "m1")
            times["cleanup"] = time.time()
            wait_for(lambda: cluster.router.pings(ADDR), 60, message="the container to answer on B")
            time.sleep(0.5)
        gap, last_a, first_b = longest_gap(answers)
        return {
            "backend": backend, "template": template, "size_mib": size_mib,
            "downtime_s": gap, "state_s": times["state"] - times["sync"],
            "transfer_s": times["cleanup"] - t0, "rootfs_s": times["rootfs"] - times["config"],
            "sync_s": times["sync"] - times["change"], "stop_to_first_answer_s": first_b - times["sync"],
            "answers": len(answers),
        }
    finally:
        cluster.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", nargs="+", default=["btrfs", "dir"], choices=["btrfs", "dir"])
    ap.add_argument("--template", default="debian")
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--pinger", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.pinger:
        pinger(args.pinger)
        return
    require_root()
    compile_sources()
    start = machine()
    rows = [one(b, args.template, args.size_mib) for b in args.backend]
    print(table(["backend", "downtime", "state", "whole transfer", "rootfs (full)", "sync (10 MiB)"],
                [[r["backend"], f"{r['downtime_s'] * 1000:.0f} ms", f"{r['state_s']:.2f} s",
                  f"{r['transfer_s']:.1f} s", f"{r['rootfs_s']:.1f} s", f"{r['sync_s']:.2f} s"]
                 for r in rows]))
    path = write_result("ct_migrate", {"machine_start": start, "machine_end": machine(), "rows": rows})
    print(f"written to {path}")


if __name__ == "__main__":
    main()
