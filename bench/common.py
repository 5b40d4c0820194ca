"""What both benchmarks share: a test node to measure in, statistics, output.

A benchmark runs in a test node (tests/helpers/node.py): a network namespace
of its own with its own osctld, so it never touches the host's network or
another engineer's daemon. The benchmark process itself enters the node's
namespace, so that osctl and LXC's own tools are started the same way, as
direct children, and LXC's command sockets (per namespace) are reachable.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.helpers.node import OSCTL, TestNode  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CLONE_NEWNET = 0x40000000


def compile_sources() -> None:
    """Byte-compile osctl and osctld, as an installed package is. Without it, under
    PYTHONDONTWRITEBYTECODE, every osctl run would compile its modules anew."""
    import compileall

    for pkg in ("osctl", "osctld"):
        compileall.compile_dir(ROOT / pkg, quiet=1)


def node_arguments(ap, ls_repeat: int) -> None:
    """The options of a benchmark that fills a node: workers, tenants, ct ls repeats."""
    ap.add_argument("--parallel", type=int, default=4, help="requests in flight [4]")
    ap.add_argument("--users", type=int, default=10, help="tenants the containers are spread over [10]")
    ap.add_argument("--ls-repeat", type=int, default=ls_repeat)


def require_root() -> None:
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark starts its own osctld and containers")


def bench_node() -> TestNode:
    """A started test node whose daemon logs as a production one does (info)."""
    compile_sources()
    return TestNode(config={"log_level": "info"}).start()


def enter_netns(name: str) -> None:
    """Move this (single-threaded) process into network namespace ``name``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


def osctl_argv(node: TestNode, *args: str) -> list[str]:
    return [OSCTL, "--socket", str(node.socket), *args]


def run_checked(argv: list[str]) -> float:
    """Run ``argv`` with no terminal; its wall time in seconds. Fails loudly."""
    t0 = time.perf_counter()
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {p.returncode}: {p.stderr.decode().strip()}")
    return dt


def summary(samples: list[float]) -> dict:
    """Median and spread (quartiles, min, max) of some timings, in seconds."""
    s = sorted(samples)
    q = statistics.quantiles(s, n=4) if len(s) > 1 else [s[0]] * 3
    return {"n": len(s), "median": statistics.median(s), "p25": q[0], "p75": q[2],
            "min": s[0], "max": s[-1]}


def rss_kib(pid: int) -> dict:
    """The process's resident (VmRSS) and peak resident (VmHWM) memory, KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def machine() -> dict:
    """What the figures depend on: cores, load (others share the machine), versions."""
    lxc = subprocess.run(["lxc-start", "--version"], capture_output=True, text=True).stdout.strip()
    return {"host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "lxc": lxc, "loadavg": os.getloadavg()}


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def write_result(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
