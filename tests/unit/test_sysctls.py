"""The node's kernel limits: merge of defaults and config, never lowered."""

from __future__ import annotations

import pytest

from osctld import sysctls
from osctld.config import Config


def tree(tmp_path, values: dict[str, int]):
    for key, value in values.items():
        p = sysctls.path(key, tmp_path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"{value}\n")
    return tmp_path


def test_overrides_replace_and_null_drops():
    want = sysctls.wanted({"kernel.pty.max": 8192, "vm.max_map_count": None,
                           "fs.aio-max-nr": 524288})
    assert want["kernel.pty.max"] == 8192
    assert "vm.max_map_count" not in want
    assert want["fs.aio-max-nr"] == 524288
    assert want["fs.inotify.max_user_instances"] == sysctls.DEFAULTS["fs.inotify.max_user_instances"]


@pytest.mark.parametrize("bad", [{"../etc/passwd": 1}, {"kernel.pty.max": "many"},
                                 {"kernel.pty.max": -1}, {"kernel.pty.max": True},
                                 {"kernel.pty.max": 1 << 64}])
def test_bad_overrides_are_refused(bad):
    with pytest.raises(ValueError):
        sysctls.wanted(bad)
    with pytest.raises(ValueError):
        Config(sysctls=bad)


def test_config_refuses_a_list():
    with pytest.raises(ValueError):
        Config(sysctls=["kernel.pty.max"])


def test_raises_but_never_lowers(tmp_path):
    root = tree(tmp_path, {"kernel.pty.max": 4096, "vm.max_map_count": 1 << 20})
    got = {s.key: s for s in sysctls.raise_all(
        {"kernel.pty.max": 65536, "vm.max_map_count": 262144, "net.core.bpf_jit_limit": 10}, root)}
    assert sysctls.read("kernel.pty.max", root) == 65536
    assert sysctls.read("vm.max_map_count", root) == 1 << 20  # the node had more
    assert got["vm.max_map_count"].public(root) == {
        "wanted": 262144, "in_force": 1 << 20, "note": "kept: the node had more"}
    assert got["kernel.pty.max"].public(root) == {"wanted": 65536, "in_force": 65536}
    # Absent in this namespace (net.core.bpf_jit_limit outside the first one).
    assert got["net.core.bpf_jit_limit"].public(root)["in_force"] is None
    assert not sysctls.path("net.core.bpf_jit_limit", root).exists()


def test_a_refused_write_is_reported_not_fatal(tmp_path, monkeypatch):
    root = tree(tmp_path, {"kernel.pty.max": 4096})

    def refuse(self, text):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(type(root), "write_text", refuse)
    [s] = sysctls.raise_all({"kernel.pty.max": 65536}, root)
    assert s.public(root) == {"wanted": 65536, "in_force": 4096,
                              "note": "cannot raise: Permission denied"}
