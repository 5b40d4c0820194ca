#!/usr/bin/env python3
"""Start, exec (`true`) and stop one busybox container: osctl against raw LXC.

Three ways, interleaved round by round (the order rotates, so that neither
gains from a warm cache or loses to a neighbour's burst of load):

- ``osctl``: the CLI, as an operator runs it (`osctl ct start|exec|stop`);
- ``client``: the same requests through the embedded ``osctl.client.Client``
  on one open connection, as a frontend sends them: the daemon's own cost,
  without the CLI's interpreter start-up;
- ``lxc``: `lxc-start`, `lxc-attach`, `lxc-stop` on an equivalent container:
  made by the same osctld (same busybox rootfs kind, same idmap and idmapped
  mount), driven from its own lxcpath with the daemon's generated config
  minus the daemon's hooks.

Aim: osctl within 1.5x of raw LXC, in total.

    sudo .venv/bin/python bench/start_exec_stop.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (bench_node, enter_netns, machine, ms, osctl_argv, run_checked,  # noqa: E402
                    summary, table, write_result)

STEPS = ("start", "exec", "stop")
# The clean stop (busybox init's halt sleeps ~2 s) weighs the same on both
# sides and dominates the total: start+exec shows the rest on its own.
SUMS = {"start+exec": ("start", "exec"), "total": STEPS}
ROWS = (*STEPS, *SUMS)
WAYS = ("osctl", "client", "lxc")
AIM = 1.5


def raw_lxcpath(node, ct: str) -> Path:
    """A private lxcpath for ``ct`` holding the daemon's config without its hooks."""
    lxcpath = node.dir / "raw-lxc"
    conf = (node.run_dir / "lxc" / "default" / ct / "config").read_text()
    conf = "\n".join(line for line in conf.splitlines() if not line.startswith("lxc.hook."))
    conf = re.sub(r"^lxc\.log\.file = .*$", f"lxc.log.file = {lxcpath / ct / 'lxc.log'}",
                  conf, flags=re.M)
    (lxcpath / ct).mkdir(parents=True, exist_ok=True)
    (lxcpath / ct / "config").write_text(conf + "\n")
    return lxcpath


class Osctl:
    def __init__(self, node, ct: str):
        self.node, self.ct = node, ct

    def start(self) -> float:
        return run_checked(osctl_argv(self.node, "ct", "start", self.ct))

    def exec(self) -> float:
        return run_checked(osctl_argv(self.node, "ct", "exec", self.ct, "--", "true"))

    def stop(self) -> float:
        return run_checked(osctl_argv(self.node, "ct", "stop", self.ct))


class Embedded:
    def __init__(self, node, ct: str):
        self.ct = ct
        self.client = node.client()
        self.null = os.open(os.devnull, os.O_RDWR)

    def _timed(self, cmd: str, args: dict, fds=()) -> float:
        t0 = time.perf_counter()
        res = self.client.call(cmd, {"id": self.ct, **args}, fds=fds)
        dt = time.perf_counter() - t0
        if cmd == "ct.exec" and res["exit_code"] != 0:
            raise RuntimeError(f"ct.exec true exited {res['exit_code']}")
        return dt

    def start(self) -> float:
        return self._timed("ct.start", {})

    def exec(self) -> float:
        return self._timed("ct.exec", {"argv": ["true"]}, fds=(self.null,) * 3)

    def stop(self) -> float:
        return self._timed("ct.stop", {})


class RawLxc:
    def __init__(self, lxcpath: Path, ct: str):
        self.base = ["-n", ct, "-P", str(lxcpath)]

    def start(self) -> float:
        return run_checked(["lxc-start", *self.base])

    def exec(self) -> float:
        return run_checked(["lxc-attach", *self.base, "--", "true"])

    def stop(self) -> float:
        return run_checked(["lxc-stop", *self.base])


def report(samples: dict, rounds: int) -> tuple[str, dict]:
    stats = {way: {row: summary(samples[way][row]) for row in ROWS} for way in WAYS}
    rows = []
    for row in ROWS:
        med = {way: stats[way][row]["median"] for way in WAYS}
        rows.append([row, *(f"{ms(med[w])} ({ms(stats[w][row]['p25'])}-{ms(stats[w][row]['p75'])})"
                            for w in WAYS),
                     f"{med['osctl'] / med['lxc']:.2f}x", f"{med['client'] / med['lxc']:.2f}x",
                     f"{ms(med['osctl'] - med['lxc'])}", f"{ms(med['client'] - med['lxc'])}"])
    head = ["step", "osctl ms", "client ms", "lxc ms", "osctl/lxc", "client/lxc",
            "osctl-lxc ms", "client-lxc ms"]
    ratio = stats["osctl"]["total"]["median"] / stats["lxc"]["total"]["median"]
    text = (f"{rounds} rounds; medians, (p25-p75) in brackets\n" + table(head, rows) +
            f"\nosctl/lxc total {ratio:.2f}x: aim <= {AIM}x {'met' if ratio <= AIM else 'NOT met'}")
    return text, {"stats": stats, "ratio_total": ratio, "aim": AIM, "aim_met": ratio <= AIM}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark starts its own osctld and containers")

    node = bench_node()
    try:
        enter_netns(node.name)
        node.call("user.new", name="bench")
        for ct in ("viaosctl", "viaraw"):
            node.call("ct.new", id=ct, user="bench", template="busybox")
        lxcpath = raw_lxcpath(node, "viaraw")
        ways = {"osctl": Osctl(node, "viaosctl"), "client": Embedded(node, "viaosctl"),
                "lxc": RawLxc(lxcpath, "viaraw")}
        samples = {w: {row: [] for row in ROWS} for w in WAYS}
        env = machine()
        for r in range(args.rounds):
            order = WAYS[r % 3:] + WAYS[:r % 3]
            for way in order:
                times = {step: getattr(ways[way], step)() for step in STEPS}
                for step, t in times.items():
                    samples[way][step].append(t)
                for row, parts in SUMS.items():
                    samples[way][row].append(sum(times[p] for p in parts))
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(
                f"{w} {ms(samples[w]['total'][-1])} ms" for w in WAYS), file=sys.stderr)
        env["loadavg_end"] = os.getloadavg()
        text, figures = report(samples, args.rounds)
        print(text)
        path = write_result("start_exec_stop", {
            "rounds": args.rounds, "machine": env, **figures,
            "samples": samples, "command": " ".join(sys.argv)})
        print(f"written to {path}")
    finally:
        raw = node.dir / "raw-lxc"
        if raw.is_dir():
            subprocess.run(["lxc-stop", "-n", "viaraw", "-P", str(raw), "-k"], capture_output=True)
            shutil.rmtree(raw, ignore_errors=True)
        node.cleanup()


if __name__ == "__main__":
    main()
