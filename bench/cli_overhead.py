"""What an osctl call costs of its own, before and after the daemon answers.

Interleaved in each round (the order rotates), against one running busybox
container of a test node:

- ``python``: a bare ``python -c pass`` of osctl's own interpreter: what
  any Python program pays to start;
- ``request``: ``python`` sending the ``ct.ls`` request with
  ``osctl.client`` alone: the interpreter, the connection and the daemon,
  without the CLI;
- ``osctl ls``: ``osctl ct ls``;
- ``lxc-attach``: ``lxc-attach -- true`` into the same container, LXC's
  own tool;
- ``osctl exec``: ``osctl ct exec C -- true``.

It prints the medians and quartiles, ``osctl ls`` over ``python`` and over
``request`` (the CLI's own cost: click, its modules, the table), and
``osctl exec`` over ``lxc-attach``. Aim: the CLI's own cost at most 30 ms
over the bare interpreter.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (ROOT, bench_node, enter_netns, machine, ms, osctl_argv,  # noqa: E402
                    require_root, run_checked, summary, table, write_result)

AIM_MS = 30.0
WAYS = ("python", "request", "osctl ls", "lxc-attach", "osctl exec")


def argvs(node, ct: str) -> dict[str, list[str]]:
    python = str(ROOT / ".venv" / "bin" / "python")
    request = (f"from osctl.client import Client; "
               f"Client({str(node.socket)!r}).connect().call('ct.ls')")
    return {
        "python": [python, "-c", "pass"],
        "request": [python, "-c", request],
        "osctl ls": osctl_argv(node, "ct", "ls"),
        "lxc-attach": ["lxc-attach", "-n", ct, "-P", str(node.run_dir / "lxc" / "default"),
                       "--clear-env", "--", "true"],
        "osctl exec": osctl_argv(node, "ct", "exec", ct, "--", "true"),
    }


def report(samples: dict[str, list[float]], rounds: int) -> tuple[str, dict]:
    stats = {w: summary(samples[w]) for w in WAYS}
    med = {w: stats[w]["median"] for w in WAYS}
    rows = [[w, ms(med[w]), f"{ms(stats[w]['p25'])}-{ms(stats[w]['p75'])}"] for w in WAYS]
    own = med["osctl ls"] - med["request"]
    over_python = med["osctl ls"] - med["python"]
    figures = {
        "stats": stats,
        "osctl_ls_over_python_ms": over_python * 1000,
        "osctl_ls_over_request_ms": own * 1000,
        "osctl_ls_ratio_python": med["osctl ls"] / med["python"],
        "osctl_exec_over_lxc_attach_ms": (med["osctl exec"] - med["lxc-attach"]) * 1000,
        "osctl_exec_ratio_lxc_attach": med["osctl exec"] / med["lxc-attach"],
        "aim_ms": AIM_MS, "aim_met": own * 1000 <= AIM_MS,
    }
    text = "\n".join([
        f"{rounds} rounds; medians in ms, p25-p75",
        table(["way", "median", "p25-p75"], rows),
        f"osctl ct ls: {figures['osctl_ls_ratio_python']:.2f}x python -c pass "
        f"(+{ms(over_python)} ms), +{ms(own)} ms over the bare request: the CLI's own cost",
        f"osctl ct exec: {figures['osctl_exec_ratio_lxc_attach']:.2f}x lxc-attach "
        f"(+{figures['osctl_exec_over_lxc_attach_ms']:.1f} ms)",
        f"aim: the CLI's own cost <= {AIM_MS:.0f} ms: {'met' if figures['aim_met'] else 'NOT met'}",
    ])
    return text, figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    require_root()
    node = bench_node()
    try:
        enter_netns(node.name)
        node.call("user.new", name="bench")
        node.call("ct.new", id="c1", user="bench", template="busybox")
        node.call("ct.start", id="c1")
        cmds = argvs(node, "c1")
        env = machine()
        samples: dict[str, list[float]] = {w: [] for w in WAYS}
        for r in range(args.rounds):
            for way in WAYS[r % len(WAYS):] + WAYS[:r % len(WAYS)]:
                samples[way].append(run_checked(cmds[way]))
        env["loadavg_end"] = os.getloadavg()
        text, figures = report(samples, args.rounds)
        print(text)
        path = write_result("cli_overhead", {"rounds": args.rounds, "machine": env, **figures,
                                             "samples": samples, "command": " ".join(sys.argv)})
        print(f"written to {path}")
    finally:
        node.cleanup()


if __name__ == "__main__":
    main()
