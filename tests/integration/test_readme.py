"""The README runs as written: every line of its osctl blocks (the tour and
each section's), in order, typed into a shell against a test node. Only the
host's paths are the node's (its image under the node's directory, its
state directory for /var/lib/osctld); what a person types at (attach,
console, passwd) is typed, and ``osctl monitor`` runs until it is stopped."""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest

from tests.conftest import require, running_node
from tests.helpers.node import ROOT, VENV_BIN
from tests.helpers.terminal import Terminal
from tests.helpers.vm import have_qemu, vm_node_config

# What a person types at a line, after what it shows.
DIALOGS = {
    "osctl ct attach ": [("# ", "exit\n")],
    "osctl ct passwd ": [("Password: ", "tour-pw-1\n"), ("confirmation: ", "tour-pw-1\n")],
    "osctl vm passwd ": [("Password: ", "tour-pw-2\n"), ("confirmation: ", "tour-pw-2\n")],
}
CONSOLES = ("osctl ct console ", "osctl vm console ")  # left with Ctrl-a q
ENDLESS = ("osctl monitor",)  # runs until it is stopped
LINE_TIMEOUT = 300


def readme_lines(text: str) -> list[str]:
    """The command lines of every ```sh block made of osctl commands (and
    the venv's activation), comments left out."""
    out = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, re.M | re.S):
        lines = [re.sub(r"\s+#.*$", "", ln).strip() for ln in block.splitlines()]
        lines = [ln for ln in lines if ln and not ln.startswith("#")]
        if all(ln.startswith(("osctl ", ". .venv/")) for ln in lines):
            out += lines
    return out


def test_readme_blocks_are_found():
    lines = readme_lines((ROOT / "README.md").read_text())
    assert lines[0] == ". .venv/bin/activate" and "osctl vm ls" in lines
    assert not [ln for ln in lines if "scripts/" in ln or "bench/" in ln]


@pytest.fixture
def tour_node(debian_template, debian_vm_image, tmp_path, request):
    require(have_qemu())
    # A debian VM still booting (TCG) does not answer the ACPI button: killed after 5 s.
    with running_node(request, vm_node_config(tmp_path, stop_timeout=5)) as n:
        yield n


def type_line(node, line: str) -> tuple[int, str]:
    """Run one README line in a shell as a person would: (exit code, what it showed)."""
    line = line.replace("/srv/", f"{node.dir}/").replace("/var/lib/osctld", str(node.state_dir))
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "OSCTLD_SOCKET": str(node.socket)}
    argv = ["bash", "-c", line]
    if line.startswith(ENDLESS):
        p = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, start_new_session=True)
        time.sleep(2)
        alive = p.poll() is None
        os.killpg(p.pid, 15)
        _, err = p.communicate(timeout=30)
        return (0 if alive else p.returncode or 1), err.decode(errors="replace")
    dialog = next((d for key, d in DIALOGS.items() if line.startswith(key)), None)
    console = line.startswith(CONSOLES)
    if dialog is None and not console:
        p = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=LINE_TIMEOUT)
        return p.returncode, p.stdout + p.stderr
    t = Terminal(argv, env=env, cwd=ROOT)
    for shown, typed in dialog or []:
        t.expect(shown, timeout=60)
        t.send(typed)
    if console:
        t.expect("Ctrl.a q", timeout=60)
        for _ in range(20):  # keys typed while the console sets the terminal up are lost
            t.send(b"\x01q")
            try:
                t.proc.wait(1)
                break
            except subprocess.TimeoutExpired:
                continue
    return t.wait(60), t.seen.decode(errors="replace")


@pytest.mark.slow
def test_the_readme_runs_as_written(tour_node):
    node = tour_node
    lines = readme_lines((ROOT / "README.md").read_text())
    for n, line in enumerate(lines, 1):
        t0 = time.monotonic()
        code, shown = type_line(node, line)
        took = time.monotonic() - t0
        assert code == 0, f"README line {n} ({took:.0f} s) exited {code}: {line}\n{shown[-2000:]}"
