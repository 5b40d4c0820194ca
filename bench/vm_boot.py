"""Time from `osctl vm start` to the guest's first marker on its serial
console, against the very same QEMU command line started by hand.

    sudo .venv/bin/python bench/vm_boot.py [--rounds 5]

Runs in a test node (its own network namespace and osctld, tcg), with the
tiny test VM (Debian's cloud kernel, a busybox initramfs whose /init prints
OSCTLD-VM-UP). Each round: `osctl vm start`, wait for the marker in the
console log, read the running QEMU's command line from /proc, `osctl vm
kill`; then start that command line directly, wait for the marker, kill it.
Prints the median, min and max of both, and their ratio. The difference is
what osctld adds: the CLI, the request, writing state, connecting QMP.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import node as test_node  # noqa: E402
from tests.helpers.templates import ensure_vm_image  # noqa: E402
from tests.helpers.vm import vm_node_config  # noqa: E402

MARKER = b"OSCTLD-VM-UP"


def wait_marker(log: Path, t0: float, timeout: float = 300) -> float:
    while time.perf_counter() - t0 < timeout:
        try:
            if MARKER in log.read_bytes():
                return time.perf_counter() - t0
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"no {MARKER.decode()} in {log} after {timeout} s")


def by_hand(argv: list[str], log: Path, pidfile: Path) -> float:
    log.unlink(missing_ok=True)
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)
    dt = wait_marker(log, t0)
    pid = int(pidfile.read_text())
    os.kill(pid, signal.SIGKILL)
    while Path(f"/proc/{pid}").exists():
        time.sleep(0.01)
    for f in pidfile.parent.glob("*.sock"):
        f.unlink()
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vm-bench-"))
    config = vm_node_config(tmp)
    ensure_vm_image("tinyvm")
    node = test_node.TestNode(config={**config, "log_level": "info"}).start()
    osctld_times, hand_times = [], []
    try:
        node.osctl("user", "new", "bench")
        node.osctl("vm", "new", "b1", "--user", "bench", "--template", "tinyvm",
                   "-c", "1", "-m", "256M", "-d", "10G")
        log = Path(node.osctl_json("vm", "show", "b1")["console_log"])
        for i in range(args.rounds):
            t0 = time.perf_counter()
            node.osctl("vm", "start", "b1")
            osctld_times.append(wait_marker(log, t0))
            pid = node.osctl_json("vm", "show", "b1")["pid"]
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
            node.osctl("vm", "kill", "b1")
            pidfile = Path(argv[argv.index(b"-pidfile") + 1].decode())
            hand_times.append(by_hand([a.decode() for a in argv], log, pidfile))
            print(f"round {i + 1}: osctl {osctld_times[-1]:.2f} s, by hand {hand_times[-1]:.2f} s",
                  file=sys.stderr)
    finally:
        node.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    om, hm = statistics.median(osctld_times), statistics.median(hand_times)
    print(f"{'vm start -> marker (tcg)':<26} {'median':>8} {'min':>8} {'max':>8}")
    for name, s in (("osctl vm start", osctld_times), ("same QEMU by hand", hand_times)):
        print(f"{name:<26} {statistics.median(s):8.2f} {min(s):8.2f} {max(s):8.2f}")
    print(f"ratio osctl / by hand: {om / hm:.2f} (osctld adds {1000 * (om - hm):.0f} ms); "
          f"{args.rounds} rounds, load {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
