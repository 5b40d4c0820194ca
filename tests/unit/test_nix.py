"""The Nix package and NixOS module parse, and say what the daemon reads."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path

import pytest

from osctld.config import Config
from tests.conftest import require

NIX = Path(__file__).resolve().parents[2] / "nix"


@pytest.mark.parametrize("name", ["package.nix", "module.nix"])
def test_nix_files_parse(name):
    require(None if shutil.which("nix-instantiate") else "nix-instantiate missing (nix-bin)")
    p = subprocess.run(["nix-instantiate", "--parse", str(NIX / name)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr


def test_module_settings_are_daemon_config_keys():
    text = (NIX / "module.nix").read_text()
    block = text[text.index("options = {", text.index("settings = lib.mkOption")):]
    named = set(re.findall(r"^ {10}([a-z_]+) = lib\.mkOption", block, re.M))
    assert named and named <= {f.name for f in fields(Config)}
    defaults = Config()
    assert '"/var/lib/osctld"' in text and str(defaults.state_dir) == "/var/lib/osctld"
    assert f"default = {defaults.autostart_parallelism};" in text


def test_module_service_leaves_containers_running():
    text = (NIX / "module.nix").read_text()
    assert 'KillMode = "process";' in text
    assert "options.services.osctld" in text and "--config ${configFile}" in text
    assert "share/osctld/templates" in (NIX / "package.nix").read_text()
