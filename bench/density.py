#!/usr/bin/env python3
"""A full node: 1000 busybox and 100 debian (systemd) containers running at once.

Busybox containers are created and started first, spread over ``--users``
tenants, with the daemon's figures (create+start rate of the last stretch,
``ct ls``, resident memory) at 250, 500 and 1000; then the debian ones,
while every busybox container runs. Each debian container's systemd is then
asked how its boot ended (``systemctl is-system-running --wait``): all
should be ``running`` or ``degraded``. Nothing is tuned by hand: the node's
daemon raises the kernel's limits itself (node config ``sysctls``, its
defaults), which is what this measures. Everything is removed afterwards.

    sudo .venv/bin/python bench/density.py [--busybox 1000] [--debian 100]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import (bench_node, machine, ms, node_arguments, require_root, rss_kib, table,  # noqa: E402
                    write_result)
from create_many import create_all, tear_down, time_ls  # noqa: E402

from tests.helpers.templates import ensure_cached  # noqa: E402

CHECKPOINTS = (250, 500, 1000)
BOOT_TIMEOUT = 300  # seconds systemd may take, with the whole node busy


def stretches(total: int) -> list[int]:
    """Where to stop and measure: the checkpoints below ``total``, and ``total``."""
    return sorted({c for c in CHECKPOINTS if c < total} | {total})


def figures(node, label: str, n: int, seconds: float, ls_repeat: int) -> dict:
    ls = time_ls(node, ls_repeat)
    return {"at": label, "count": n, "rate": n / seconds if seconds else None,
            "ls": ls, "rss_kib": rss_kib(node.proc.pid)}


def boot_states(node, ids: list[str], parallel: int) -> dict[str, str]:
    """How each debian container's boot ended, as its systemd says (or why not)."""
    def one(ct: str) -> str:
        with node.client() as c:
            try:
                res = c.call("ct.exec", {"id": ct, "argv": [
                    "timeout", str(BOOT_TIMEOUT), "systemctl", "is-system-running", "--wait"]})
            except Exception as e:
                shown = c.call("ct.show", {"id": ct})
                return f"{shown['state']} ({(shown.get('last_stop') or {}).get('reason', e)})"
            return res["stdout"].decode().strip() or f"exit {res['exit_code']}"

    with ThreadPoolExecutor(parallel) as pool:
        return dict(zip(ids, pool.map(one, ids)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--busybox", type=int, default=1000)
    ap.add_argument("--debian", type=int, default=100)
    node_arguments(ap, ls_repeat=5)
    args = ap.parse_args()
    require_root()
    if args.busybox < 1 or args.debian < 0:
        sys.exit("--busybox must be at least 1, --debian at least 0")
    if args.debian:
        ensure_cached("debian")  # built in the host's namespace: the node's has no way out

    # A timeout's SIGTERM still removes everything (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    node = bench_node()
    ids: list[str] = []
    try:
        env = machine()
        users = [f"tenant{u}" for u in range(args.users)]
        for u in users:
            node.call("user.new", name=u)
        for tpl in ("busybox", "debian")[:1 + bool(args.debian)]:  # unpack each template once
            node.call("ct.new", id="warmup", user=users[0], template=tpl)
            node.call("ct.del", id="warmup")
        sysctls = node.call("daemon.status")["sysctls"]
        points, failure = [], None
        done_before = 0
        busybox = [(users[i % len(users)], f"bb{i:04d}") for i in range(args.busybox)]
        debian = [(users[i % len(users)], f"deb{i:03d}") for i in range(args.debian)]
        try:
            for upto in stretches(args.busybox):
                part = busybox[done_before:upto]
                ids += [ct for _, ct in part]
                t0 = time.perf_counter()
                create_all(node, part, args.parallel)
                points.append(figures(node, f"busybox {upto}", len(part), time.perf_counter() - t0,
                                      args.ls_repeat))
                done_before = upto
                print(f"{upto} busybox running", file=sys.stderr, flush=True)
            if debian:
                ids += [ct for _, ct in debian]
                t0 = time.perf_counter()
                create_all(node, debian, args.parallel, "debian")
                points.append(figures(node, f"+ debian {args.debian}", len(debian),
                                      time.perf_counter() - t0, args.ls_repeat))
        except Exception as e:
            failure = str(e)
            print(f"stopped: {failure}", file=sys.stderr)
        t0 = time.perf_counter()
        deb_ids = [ct for _, ct in debian if ct in ids]
        boots = boot_states(node, deb_ids, args.parallel) if deb_ids and failure is None else {}
        boot_wait = time.perf_counter() - t0
        good = sum(1 for s in boots.values() if s in ("running", "degraded"))
        states = Counter(c["state"] for c in node.call("ct.ls"))
        env["loadavg_end"] = os.getloadavg()

        rows = []
        for p in points:
            rows.append([p["at"], f"{p['rate']:.2f} /s", f"{ms(p['ls']['osctl']['median'])} ms",
                         f"{ms(p['ls']['client']['median'])} ms",
                         f"{p['rss_kib']['VmRSS'] / 1024:.1f} MiB"])
        print(f"{args.busybox} busybox + {args.debian} debian containers, {args.parallel} in flight, "
              f"{args.users} users; load {env['loadavg'][0]:.2f} -> {env['loadavg_end'][0]:.2f}")
        print(table(["running", "create+start", "osctl ct ls", "ct.ls request", "daemon RSS"], rows))
        print(f"containers by state at the end: {dict(states)}")
        if boots:
            print(f"debian boots: {good} of {len(boots)} running or degraded "
                  f"({dict(Counter(boots.values()))}, {boot_wait:.0f} s to learn)")
        print("sysctls in force: " + ", ".join(f"{k}={v['in_force']}" for k, v in sorted(sysctls.items())
                                               if v["in_force"] is not None))
        if failure:
            print(f"FAILED: {failure}")
        path = write_result("density", {
            "busybox": args.busybox, "debian": args.debian, "parallel": args.parallel,
            "users": args.users, "machine": env, "points": points, "states": dict(states),
            "boots": boots, "boot_wait": boot_wait, "sysctls": sysctls, "failure": failure,
            "command": " ".join(sys.argv)})
        print(f"written to {path}")
    finally:
        tear_down(node, ids, args.parallel)
    if failure or (boots and good < len(boots)):
        sys.exit(1)


if __name__ == "__main__":
    main()
