#!/usr/bin/env python3
"""Downtime of ``osctl-convert vz6 migrate`` from an OpenVZ node to osctld.

One osctld test node and its router (tests/helpers/multinode.py), and a
TEST DOUBLE of an OpenVZ node on the same network (tests/helpers/openvz.py:
no OpenVZ kernel runs here; its vzctl double runs a process in the private
area and makes its addresses answer from that node until ``vzctl stop``).
The private area is the debian template plus a file of random data (1 GiB
by default). Timed: ``stage``, ``sync`` (the full pass while it runs), a
10 MiB change written into the private area, ``transfer`` (vzctl stop, the
last pass, fix-ups and start on osctld), ``cleanup``. The router pings the
container's address every 10 ms: the downtime is the gap between the last
answer (from the OpenVZ node, until its vzctl stop) and the first from the
osctld node. Aim (issue 11): under 5 s.

    sudo .venv/bin/python bench/vz6_migrate.py [--size-mib 1024] [--change-mib 10]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import compile_sources, machine, require_root, table, write_result  # noqa: E402
from ct_migrate import longest_gap, pinging  # noqa: E402

from tests.helpers.multinode import Cluster  # noqa: E402
from tests.helpers.openvz import OpenVZNode  # noqa: E402
from tests.helpers.templates import ensure_cached  # noqa: E402
from tests.helpers.wait import wait_for  # noqa: E402
from tests.integration.test_import_vz import private_area  # noqa: E402

ADDR = "192.0.2.80"


def one(size_mib: int, change_mib: int) -> dict:
    cluster = Cluster(1, {"log_level": "info"})
    with tempfile.TemporaryDirectory(prefix="vz6-bench-", dir="/var/tmp") as tmp:
        ovz = OpenVZNode(Path(tmp) / "openvz", "198.51.100.40")
        try:
            cluster.start()
            node = cluster.nodes[0]
            ovz.start(cluster.router)
            private, conf = private_area(ovz.root / "vz", ensure_cached("debian"), ADDR, "2001:db8::80")
            ovz.add_ct("101", conf)
            subprocess.run(["dd", "if=/dev/urandom", f"of={private}/root/big", "bs=1M",
                            f"count={size_mib}", "status=none"], check=True)
            node.osctl("receive", "authorized-keys", "add", "ovz", input=ovz.convert("key", "gen").stdout)
            node.osctl("user", "new", "alice")
            ovz.run("vzctl", "start", "101")
            wait_for(lambda: cluster.router.pings(ADDR), 30, message="the container to answer on OpenVZ")
            times: dict[str, float] = {}

            def step(name: str, *args: str) -> str:
                """One stage of the migration; its progress lines."""
                p = ovz.convert("vz6", "migrate", name, "101", *args, timeout=600)
                times[name] = time.time()
                return p.stderr

            with pinging(cluster.router, ADDR) as answers:
                t0 = time.time()
                step("stage", node.ip, "--user", "alice")
                step("sync")
                subprocess.run(["dd", "if=/dev/urandom", f"of={private}/root/change", "bs=1M",
                                f"count={change_mib}", "status=none"], check=True)
                times["change"] = time.time()
                said = [ln for ln in step("transfer").splitlines() if "after the stop" in ln]
                step("cleanup")
                wait_for(lambda: cluster.router.pings(ADDR), 60, message="the container to answer on osctld")
                time.sleep(0.5)
            gap, _last_ovz, first_osctld = longest_gap(answers)
            return {"size_mib": size_mib, "change_mib": change_mib, "downtime_s": gap,
                    "transfer_s": times["transfer"] - times["change"],
                    "first_pass_s": times["sync"] - times["stage"],
                    "whole_s": times["cleanup"] - t0, "stop_to_first_answer_s": first_osctld - times["change"],
                    "converter_says": said[-1] if said else None, "answers": len(answers)}
        finally:
            ovz.cleanup()
            cluster.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--change-mib", type=int, default=10)
    args = ap.parse_args()
    require_root()
    compile_sources()
    start = machine()
    r = one(args.size_mib, args.change_mib)
    print(table(["private area", "changed", "downtime (ping gap)", "transfer", "first pass", "whole"],
                [[f"{r['size_mib']} MiB", f"{r['change_mib']} MiB", f"{r['downtime_s']:.2f} s",
                  f"{r['transfer_s']:.2f} s", f"{r['first_pass_s']:.1f} s", f"{r['whole_s']:.1f} s"]]))
    print(r["converter_says"])
    path = write_result("vz6_migrate", {"machine_start": start, "machine_end": machine(), "rows": [r]})
    print(f"written to {path}")


if __name__ == "__main__":
    main()
