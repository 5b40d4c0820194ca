"""The commands, the model, the client and the node they use type-check
(mypy, configured in setup.cfg's [mypy])."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ["-p", "osctld.commands", "-p", "osctld.model", "-p", "osctl",
           "-m", "osctld.node", "-m", "osctld.pools", "-m", "osctld.startup",
           "-m", "osctld.hooksock", "-m", "osctld.history",
           "-m", "osctld.consumption", "-m", "osctld.metrics", "-p", "osctld.cluster",
           "-p", "osctld.storage", "-m", "osctld.template"]


def test_mypy_passes():
    p = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "setup.cfg"),
                        "--cache-dir", str(ROOT / ".mypy_cache"), *CHECKED],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"mypy found type errors:\n{p.stdout}{p.stderr}"
