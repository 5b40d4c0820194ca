"""A TEST DOUBLE of an OpenVZ Legacy node on the multinode tests' provider
network: no OpenVZ kernel runs here, so it is a network namespace on the
router's bridge with the files such a node holds under ``root``
(/etc/vz/vz.conf, /etc/vz/conf/CTID.conf, /vz/private/CTID) and a ``vzctl``
test double (tests/helpers/vzctl_double.py) on its PATH. ``osctl-convert``
runs there with ``--root``, as it would on the real node: it only dials out
(ssh to the osctld node's receive user), so the double needs no sshd."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from .multinode import Router

DOUBLE = Path(__file__).with_name("vzctl_double.py")
VZ_CONF = 'VE_ROOT="/vz/root/$VEID"\nVE_PRIVATE="/vz/private/$VEID"\nVE_LAYOUT="simfs"\n'


class OpenVZNode:
    def __init__(self, root: Path, ip: str) -> None:
        self.name = f"oz{uuid.uuid4().hex[:8]}"
        self.root, self.ip = Path(root), ip
        self.bin = self.root / "usr/sbin"

    def start(self, router: Router) -> "OpenVZNode":
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)
        router.plug(self, self.ip)  # type: ignore[arg-type]  # it needs the name only
        (self.root / "etc/vz/conf").mkdir(parents=True, exist_ok=True)
        (self.root / "etc/vz/vz.conf").write_text(VZ_CONF)
        self.bin.mkdir(parents=True, exist_ok=True)
        (self.bin / "vzctl").write_text(f'#!/bin/sh\nexec /usr/bin/python3 -I {DOUBLE} "$@"\n')
        (self.bin / "vzctl").chmod(0o755)
        return self

    def env(self) -> dict:
        """The environment of a command on this node: the vzctl double on PATH."""
        return {**os.environ, "VZ_ROOT": str(self.root),
                "PATH": f"{self.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}"}

    def run(self, *argv: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        """``argv`` in the node's namespace."""
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], check=check,
                              capture_output=True, text=True, env=self.env(), **kw)

    def convert(self, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        """osctl-convert on this node."""
        p = self.run(sys.executable, "-m", "osctl_convert.cli", "--root", str(self.root), *args,
                     check=False, **kw)
        if check and p.returncode != 0:
            raise AssertionError(f"osctl-convert {' '.join(args)}: exit {p.returncode}\n"
                                 f"{p.stdout}\n{p.stderr}")
        return p

    def add_ct(self, ctid: str, conf: str) -> Path:
        (self.root / f"etc/vz/conf/{ctid}.conf").write_text(conf)
        return self.root / "vz/private" / ctid

    def cleanup(self) -> None:
        for conf in (self.root / "etc/vz/conf").glob("*.conf"):
            self.run("vzctl", "stop", conf.stem, check=False)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
