#!/usr/bin/env python3
"""Create and start many busybox containers, then list them and weigh the daemon.

Several client connections (``--parallel``) each send ``ct.new`` then
``ct.start`` for the next container, so that the daemon has that many
operations in flight, as a frontend that deploys many at once would make
it. Then ``osctl ct ls`` is timed (the CLI, as an operator runs it, and the
bare ``ct.ls`` request), and the daemon's resident memory is read from
/proc. Everything is removed afterwards.

Aims: at least 5 containers created and started per second on 2 cores,
no slow-down from the first 20 to the last 20, ``osctl ct ls`` under
100 ms at 200 containers, the daemon under 80 MiB resident.

    sudo .venv/bin/python bench/create_many.py [--count 200] [--parallel 4] [--users 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (bench_node, machine, ms, node_arguments, osctl_argv, require_root,  # noqa: E402
                    rss_kib, run_checked, summary, table, write_result)

AIM_RATE = 5.0
AIM_LS = 0.100
AIM_RSS_MIB = 80
EDGE = 20  # the first and last this many containers are compared


def create_all(node, names: list[tuple[str, str]], parallel: int,
               template: str = "busybox") -> list[dict]:
    """ct.new + ct.start of every (user, id), ``parallel`` connections at once."""
    todo = iter(names)
    lock = threading.Lock()
    done: list[dict] = []
    t0 = time.perf_counter()

    def worker() -> None:
        with node.client() as c:
            while True:
                with lock:
                    item = next(todo, None)
                if item is None:
                    return
                user, ct = item
                t_new = time.perf_counter()
                c.call("ct.new", {"id": ct, "user": user, "template": template})
                t_start = time.perf_counter()
                res = c.call("ct.start", {"id": ct})
                t_done = time.perf_counter()
                if res["state"] != "running":
                    raise RuntimeError(f"{ct} is {res['state']} after ct.start")
                with lock:
                    done.append({"id": ct, "new": t_start - t_new, "start": t_done - t_start,
                                 "submitted": t_new - t0, "done": t_done - t0})

    with ThreadPoolExecutor(parallel) as pool:
        for f in [pool.submit(worker) for _ in range(parallel)]:
            f.result()
    return sorted(done, key=lambda d: d["done"])


def rates(done: list[dict]) -> dict:
    n = len(done)
    last = done[-EDGE:]
    by_submission = sorted(done, key=lambda d: d["submitted"])
    # The first and last EDGE intervals between completions, alike at both ends;
    # the first completion itself waits for a whole ct.new + ct.start (the
    # pipeline filling), which "overall" counts and these leave out.
    return {
        "overall": n / done[-1]["done"],
        "first": EDGE / (done[EDGE]["done"] - done[0]["done"]),
        "last": EDGE / (last[-1]["done"] - done[-EDGE - 1]["done"]),
        "new_first": summary([d["new"] for d in by_submission[:EDGE]]),
        "new_last": summary([d["new"] for d in by_submission[-EDGE:]]),
        "start_first": summary([d["start"] for d in by_submission[:EDGE]]),
        "start_last": summary([d["start"] for d in by_submission[-EDGE:]]),
    }


def time_ls(node, repeat: int) -> dict:
    """``osctl ct ls``, the bare ct.ls request and, alternating with the CLI, a bare
    interpreter's start-up: how much of the CLI's time the machine's load explains."""
    cli, bare = [], []
    for _ in range(repeat):
        cli.append(run_checked(osctl_argv(node, "ct", "ls")))
        bare.append(run_checked([sys.executable, "-c", "pass"]))
    wire = []
    with node.client() as c:
        for _ in range(repeat):
            t0 = time.perf_counter()
            rows = c.call("ct.ls")
            wire.append(time.perf_counter() - t0)
    return {"osctl": summary(cli), "client": summary(wire), "python": summary(bare), "rows": len(rows),
            "running": sum(1 for r in rows if r["state"] == "running")}


def remove_all(node, ids: list[str], parallel: int) -> None:
    def delete(ct: str) -> None:
        with node.client() as c:
            c.call("ct.del", {"id": ct, "force": True})

    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(delete, ids))


def tear_down(node, ids: list[str], parallel: int) -> None:
    """Delete the containers of ``ids`` that exist, then the node: also after a failure."""
    try:
        existing = {c["id"] for c in node.call("ct.ls")}
        remove_all(node, [i for i in ids if i in existing], parallel)
    except Exception as e:
        print(f"removing containers: {e}", file=sys.stderr)
    node.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=200)
    node_arguments(ap, ls_repeat=10)
    args = ap.parse_args()
    require_root()
    if args.count <= 2 * EDGE + 1:
        sys.exit(f"--count must be above {2 * EDGE + 1}")

    node = bench_node()
    ids: list[str] = []
    try:
        users = [f"tenant{u}" for u in range(args.users)]
        for u in users:
            node.call("user.new", name=u)
        names = [(users[i % len(users)], f"ct{i:04d}") for i in range(args.count)]
        ids = [ct for _, ct in names]
        env = machine()
        # The pool builds (unpacks) its busybox template on first use: not part of the rate.
        node.call("ct.new", id="warmup", user=users[0], template="busybox")
        node.call("ct.del", id="warmup")
        rss_before = rss_kib(node.proc.pid)
        ls_empty = time_ls(node, args.ls_repeat)
        t0 = time.perf_counter()
        done = create_all(node, names, args.parallel)
        elapsed = time.perf_counter() - t0
        r = rates(done)
        ls = time_ls(node, args.ls_repeat)
        if ls["running"] != args.count:
            raise RuntimeError(f"{ls['running']} of {args.count} containers are running")
        rss = rss_kib(node.proc.pid)
        env["loadavg_end"] = os.getloadavg()

        rss_mib = rss["VmRSS"] / 1024
        no_slowdown = r["last"] >= 0.9 * r["first"]
        rows = [
            ["created+started", f"{args.count} in {elapsed:.1f} s", ""],
            ["rate overall", f"{r['overall']:.2f} /s", f">= {AIM_RATE} /s: {'met' if r['overall'] >= AIM_RATE else 'NOT met'}"],
            [f"rate first {EDGE}", f"{r['first']:.2f} /s", ""],
            [f"rate last {EDGE}", f"{r['last']:.2f} /s", f"no slow-down: {'met' if no_slowdown else 'NOT met'}"],
            [f"ct.new first/last {EDGE}", f"{ms(r['new_first']['median'])} / {ms(r['new_last']['median'])} ms", "median"],
            [f"ct.start first/last {EDGE}", f"{ms(r['start_first']['median'])} / {ms(r['start_last']['median'])} ms", "median"],
            [f"osctl ct ls ({ls['rows']})", f"{ms(ls['osctl']['median'])} ms ({ms(ls['osctl']['min'])}-{ms(ls['osctl']['max'])})",
             f"< {AIM_LS * 1000:.0f} ms: {'met' if ls['osctl']['median'] < AIM_LS else 'NOT met'}"],
            ["osctl ct ls (0)", f"{ms(ls_empty['osctl']['median'])} ms", "before the first container"],
            ["python -c pass", f"{ms(ls['python']['median'])} ms", "the interpreter alone, meanwhile"],
            ["ct.ls request", f"{ms(ls['client']['median'])} ms", "client, one connection"],
            ["daemon VmRSS", f"{rss_mib:.1f} MiB (peak {rss['VmHWM'] / 1024:.1f}, at 0: {rss_before['VmRSS'] / 1024:.1f})",
             f"< {AIM_RSS_MIB} MiB: {'met' if rss_mib < AIM_RSS_MIB else 'NOT met'}"],
        ]
        print(f"{args.count} busybox containers, {args.parallel} in flight, {args.users} users")
        print(table(["what", "figure", "aim"], rows))
        path = write_result("create_many", {
            "count": args.count, "parallel": args.parallel, "users": args.users,
            "machine": env, "elapsed": elapsed, "rates": r, "ls": ls, "ls_empty": ls_empty,
            "rss_kib": rss, "rss_kib_before": rss_before,
            "aims": {"rate": r["overall"] >= AIM_RATE, "no_slowdown": no_slowdown,
                     "ls": ls["osctl"]["median"] < AIM_LS, "rss": rss_mib < AIM_RSS_MIB},
            "containers": done, "command": " ".join(sys.argv)})
        print(f"written to {path}")
    finally:
        tear_down(node, ids, args.parallel)


if __name__ == "__main__":
    main()
