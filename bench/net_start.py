#!/usr/bin/env python3
"""Container start with one routed netif holding 8 addresses, against the
same busybox container without network: the time the network adds.

Runs its own test node (a network namespace with its own osctld, as the
integration tests do) and leaves nothing behind. As root, from the tree:

    .venv/bin/python bench/net_start.py [--rounds 15]

Aim: under 50 ms added per interface.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.node import TestNode  # noqa: E402

ADDRESSES = [f"192.0.2.{i}" for i in range(1, 9)]


def timed_start(client, ct: str) -> float:
    t = time.perf_counter()
    client.call("ct.start", {"id": ct})
    elapsed = time.perf_counter() - t
    client.call("ct.stop", {"id": ct, "timeout": 10})
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    node = TestNode()
    try:
        node.start()
        node.osctl("user", "new", "bench")
        for ct in ("nonet", "net1"):
            node.osctl("ct", "new", ct, "--user", "bench")
        node.osctl("ct", "netif", "new", "net1", "eth0")
        for a in ADDRESSES:
            node.osctl("ct", "netif", "ip", "add", "net1", "eth0", a)
        times: dict[str, list[float]] = {"nonet": [], "net1": []}
        with node.client() as c:
            for ct in times:  # warm-up: caches, first hook interpreter start
                timed_start(c, ct)
            for _ in range(args.rounds):
                for ct in times:  # interleaved, so load on the machine hits both alike
                    times[ct].append(timed_start(c, ct))
        med = {ct: statistics.median(v) * 1000 for ct, v in times.items()}
        added = med["net1"] - med["nonet"]
        print(f"{'container':<34} {'median start':>13} {'min':>9} {'max':>9}")
        for ct, label in (("nonet", "busybox, no network"),
                          ("net1", f"busybox, 1 routed netif, {len(ADDRESSES)} addresses")):
            v = [x * 1000 for x in times[ct]]
            print(f"{label:<34} {med[ct]:>10.1f} ms {min(v):>6.1f} ms {max(v):>6.1f} ms")
        print(f"added by the network: {added:.1f} ms per interface "
              f"({args.rounds} rounds; aim < 50 ms)")
        return 0
    finally:
        node.cleanup()


if __name__ == "__main__":
    sys.exit(main())
