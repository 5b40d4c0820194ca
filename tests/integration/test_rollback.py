"""A `ct new` that fails or is cancelled half way leaves nothing behind:
no rootfs, no config, no LXC definition, no ID allocation, no subuid line."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import pytest

from osctl import protocol
from osctl.client import Client
from osctl.protocol import OsctlError
from tests.helpers.node import ROOT
from tests.helpers.wait import wait_for

RECIPES = {
    # Fails in its recipe, after writing part of a rootfs.
    "broken": "#!/bin/sh\nmkdir -p \"$1/etc\"\necho half done\necho 'cannot go on' >&2\nexit 3\n",
    # Builds, but its rootfs has a file where /etc should be: the container's
    # hostname cannot be written, a step after the clone.
    "badroot": "#!/bin/sh\nmkdir -p \"$1/sbin\"\necho not a dir > \"$1/etc\"\n",
    # busybox, slowly: long enough to cancel or to hang up in the middle.
    "slow": f"#!/bin/sh\nsleep 3\nexec {ROOT}/templates/busybox/build \"$@\"\n",
}


@pytest.fixture
def tnode(node):
    """A node with test templates and a template cache of its own."""
    tdir = node.dir / "templates"
    for name, recipe in RECIPES.items():
        (tdir / name).mkdir(parents=True)
        (tdir / name / "meta.yml").write_text("distribution: busybox\nversions: ['1']\ndefault_version: '1'\n")
        (tdir / name / "build").write_text(recipe)
        (tdir / name / "build").chmod(0o755)
    (tdir / "slow" / "lxc.conf").write_text((ROOT / "templates/busybox/lxc.conf").read_text())
    (tdir / "debian").symlink_to(ROOT / "templates" / "debian")
    node.config.update(templates_dir=str(tdir), cache_dir=str(node.dir / "cache"))
    node.restart()
    node.osctl("user", "new", "u")
    node.osctl("ct", "new", "keep", "--user", "u", "--template", "slow")  # an unrelated container
    return node


def footprint(node) -> dict:
    """Everything a container could leave on this node, apart from template caches."""
    pool = Path(node.osctl_json("pool", "show", "default")["path"])

    return {
        "cts": sorted(c["id"] for c in node.osctl_json("ct", "ls")),
        "ct_dirs": sorted(p.name for p in (pool / "ct").iterdir()),
        "ct_conf": sorted(p.name for p in (pool / "conf" / "ct").iterdir()),
        "lxc": sorted(p.name for p in (node.run_dir / "lxc" / "default").iterdir()),
        "conf": {p.relative_to(pool).as_posix(): p.read_text()
                 for p in (pool / "conf").rglob("*.yml") if p.parent.name != "ct"},
        "builds": sorted(p.name for p in (pool / "tpl").iterdir() if p.name.startswith(".")),
        "subuid": node.subid_lines("subuid"),
        "subgid": node.subid_lines("subgid"),
        "users": node.osctl_json("user", "ls"),
    }


def test_failing_ct_new_leaves_nothing_behind(tnode):
    node = tnode
    before = footprint(node)
    assert before["cts"] == ["keep"] and before["lxc"] == ["keep"]

    cases = [
        (["--template", "broken"], 1, "failed to build (exit 3)"),
        (["--template", "badroot"], 1, "internal error"),
        (["--template", "debian", "--version", "nosuchrelease"], 2, "no version 'nosuchrelease'"),
        # Not in this node's cache, and no mirror in its namespace: the error
        # names the fixtures a test must use (tests/helpers/node.py NO_MIRROR).
        (["--template", "debian"], 1, "request-debian_template"),
        (["--template", "nosuch"], 3, "template 'nosuch' not found"),
        (["--template", "slow", "--hostname", "bad_host"], 2, "invalid hostname"),
        (["--template", "slow", "--dns", "resolver.example"], 2, "invalid DNS resolver"),
    ]
    for args, code, words in cases:
        p = node.osctl("ct", "new", "doomed", "--user", "u", *args, check=False)
        assert p.returncode == code, (args, p.stderr)
        assert words in p.stderr, (args, p.stderr)
        assert footprint(node) == before, args
    p = node.osctl("ct", "new", "keep", "--user", "u", "--template", "slow", check=False)
    assert p.returncode == 4 and "exists" in p.stderr  # the existing one is not touched
    assert footprint(node) == before
    assert not (node.dir / "cache" / "broken-1.tar").exists()

    # Each failure is in the history, with its error.
    failed = [h for h in node.osctl_json("history", "-n", "0")
              if h["cmd"] == "ct.new" and h["result"] == "error"]
    assert len(failed) >= 4 and any("exit 3" in h["error"] for h in failed)
    # The unrelated container is whole and starts.
    assert node.osctl_json("ct", "start", "keep")["state"] == "running"


def test_cancelled_ct_new_rolls_back(tnode):
    node = tnode
    tpl = Path(node.osctl_json("pool", "show", "default")["path"]) / "tpl"
    for p in tpl.glob("slow-*"):  # make the next ct.new build again
        shutil.rmtree(p)
    (node.dir / "cache" / "slow-1.tar").unlink()
    before = footprint(node)
    with Client(str(node.socket)) as c:
        req = c.send("ct.new", {"id": "doomed", "user": "u", "template": "slow"})
        time.sleep(1)
        ops = node.call("op.ls")
        assert ops == [f"{c.server_info['conn']}:{req}"]
        node.call("op.cancel", op=ops[0])
        with pytest.raises(OsctlError) as e:
            c.wait(req)
        assert e.value.code == "cancelled"
    assert footprint(node) == before
    assert node.call("op.ls") == []


def test_hanging_up_during_ct_new_leaves_a_whole_container_or_none(tnode):
    node = tnode
    before = footprint(node)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(node.socket))
    s.sendall(protocol.encode(protocol.request(1, "ct.new", {"id": "orphan", "user": "u",
                                                             "template": "broken"})))
    s.sendall(protocol.encode(protocol.request(2, "ct.new", {"id": "c2", "user": "u",
                                                             "template": "slow"})))
    time.sleep(0.5)
    s.close()
    wait_for(lambda: node.call("op.ls"), 30, message="the operations to end", until=lambda ops: ops == [])
    after = footprint(node)
    # The failed one left nothing; the other went on to the end, whole.
    assert after["cts"] == ["c2", "keep"]
    assert after["lxc"] == after["ct_dirs"] == ["c2", "keep"]
    assert after["ct_conf"] == ["c2.yml", "keep.yml"]
    per_ct = ("cts", "lxc", "ct_dirs", "ct_conf", "users")  # users: a count of containers
    assert {k: v for k, v in after.items() if k not in per_ct} == \
        {k: v for k, v in before.items() if k not in per_ct}
    assert node.osctl_json("ct", "start", "c2")["state"] == "running"
