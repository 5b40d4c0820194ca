"""A lean nested LXC for tests: the node's own LXC tools, copied into a
busybox container's rootfs with the libraries they link (from ldd), and a
busybox rootfs for the container inside. No package mirror, no network,
a second or so of copying; the same LXC version runs inside and out."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from osctld.runtime.cgroup import layout as cgroups

TOOLS = ("/usr/bin/lxc-start", "/usr/bin/lxc-info", "/usr/bin/lxc-stop")
NEST = "/nest"  # inside the outer container
NESTED_CONFIG = """\
lxc.uts.name = n1
lxc.rootfs.path = dir:/nest/n1/rootfs
lxc.net.0.type = empty
lxc.mount.auto = proc:mixed sys:mixed
lxc.autodev = 0
lxc.apparmor.profile = unconfined
lxc.init.cmd = /bin/busybox sleep 600
lxc.log.file = /nest/n1.log
lxc.log.level = WARN
"""
# A nested container with a limit: it starts only where cgroups can be made
# inside the container, which is what the lxc feature is for.
NESTED_LIMIT = ("pids", "pids.max", "64")


def _copy(src: str, rootfs: Path) -> None:
    dst = rootfs / src.lstrip("/")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(os.path.realpath(src), dst)  # the file itself, under the linked name


def install(rootfs: Path) -> None:
    """Copy LXC's tools and their libraries into ``rootfs`` and make the
    nested container's rootfs and config under /nest."""
    libs = set()
    for tool in TOOLS:
        out = subprocess.run(["ldd", tool], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            parts = line.split()
            path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
            if path.startswith("/"):
                libs.add(path)
    for f in (*TOOLS, *sorted(libs)):
        _copy(f, rootfs)
    # liblxc mounts the rootfs here before pivoting into it.
    (rootfs / "usr/lib/x86_64-linux-gnu/lxc/rootfs").mkdir(parents=True, exist_ok=True)
    nested = rootfs / NEST.lstrip("/") / "n1"
    for d in ("bin", "proc", "sys", "dev", "tmp"):
        (nested / "rootfs" / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", nested / "rootfs/bin/busybox")
    controller, setting, value = NESTED_LIMIT
    key = cgroups.detect().lxc_key(controller, setting)
    (nested / "config").write_text(NESTED_CONFIG + f"{key} = {value}\n")


def start_cmd() -> list[str]:
    return ["lxc-start", "-n", "n1", "-P", NEST]


def state_cmd() -> list[str]:
    return ["lxc-info", "-n", "n1", "-P", NEST, "-s", "-H"]


def stop_cmd() -> list[str]:
    return ["lxc-stop", "-n", "n1", "-P", NEST, "-k"]
