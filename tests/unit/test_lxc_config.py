"""LXC configuration rendering: pure text from a container, its user and its pool."""

from __future__ import annotations

from pathlib import Path

import pytest

from osctld.model.container import Container
from osctld.model.idmap import MapEntry
from osctld.model.pool import IDMAP_CHOWN, IDMAP_MOUNT
from osctld.model.user import User
from osctld.runtime.lxc_config import HOOK_SCRIPT, Hooks, LxcSpec, render
from osctld.template import Templates

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def spec(idmap: str = IDMAP_MOUNT, **kw) -> LxcSpec:
    user = User("alice", "tank",
                [MapEntry(0, 1_000_000, 65536), MapEntry(65536, 3_000_000, 65536)],
                [MapEntry(0, 2_000_000, 131072)])
    ct = Container("web1", "tank", "alice", "debian", "bookworm", hostname="web1.example.org")
    args = dict(ct=ct, user=user, rootfs=Path("/pools/tank/ct/web1/rootfs"), idmap=idmap,
                log_file=Path("/run/osctld/lxc/tank/web1/lxc.log"),
                hooks=Hooks(Path("/run/osctld/hook.sock"), python="/usr/bin/python3"),
                seccomp=Path("/run/osctld/lxc/tank/web1/seccomp"))
    args.update(kw)
    return LxcSpec(**args)


def keys(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            k, _, v = line.partition("=")
            out.append((k.strip(), v.strip()))
    return out


def values(text: str, key: str) -> list[str]:
    return [v for k, v in keys(text) if k == key]


def test_every_line_is_a_key_and_a_value():
    for k, v in keys(render(spec())):
        assert k.startswith("lxc.") and v, (k, v)


def test_idmapped_pool_maps_the_rootfs_at_mount_time():
    text = render(spec(IDMAP_MOUNT))
    assert values(text, "lxc.rootfs.path") == ["dir:/pools/tank/ct/web1/rootfs"]
    assert values(text, "lxc.rootfs.options") == ["idmap=container"]


def test_chown_pool_has_no_idmapped_mount():
    text = render(spec(IDMAP_CHOWN))
    assert values(text, "lxc.rootfs.path") == ["dir:/pools/tank/ct/web1/rootfs"]
    assert values(text, "lxc.rootfs.options") == []


@pytest.mark.parametrize("idmap", [IDMAP_MOUNT, IDMAP_CHOWN])
def test_idmap_lines_follow_the_users_maps(idmap):
    assert values(render(spec(idmap)), "lxc.idmap") == [
        "u 0 1000000 65536", "u 65536 3000000 65536", "g 0 2000000 131072"]


def test_hostname_and_log():
    text = render(spec())
    assert values(text, "lxc.uts.name") == ["web1.example.org"]
    assert values(text, "lxc.log.file") == ["/run/osctld/lxc/tank/web1/lxc.log"]
    s = spec()
    s.ct.hostname = None
    assert values(render(s), "lxc.uts.name") == ["web1"]


def test_hooks_reach_the_daemon_socket_for_the_pool():
    text = render(spec())
    cmd = f"/usr/bin/python3 -I -S {HOOK_SCRIPT} /run/osctld/hook.sock tank"
    assert values(text, "lxc.hook.start-host") == [cmd]
    assert values(text, "lxc.hook.post-stop") == [cmd]
    assert Path(HOOK_SCRIPT).is_file()


def test_hook_command_quotes_odd_paths():
    hooks = Hooks(Path("/run/o sctld/hook.sock"), python="/usr/bin/python3")
    assert "'/run/o sctld/hook.sock'" in hooks.command("tank")


def test_always_unprivileged_and_confined():
    text = render(spec())
    assert values(text, "lxc.idmap")  # no map would mean a privileged container
    drops = " ".join(values(text, "lxc.cap.drop")).split()
    assert {"sys_module", "sys_time", "sys_rawio", "mac_admin", "mac_override"} <= set(drops)
    assert values(text, "lxc.seccomp.profile") == ["/run/osctld/lxc/tank/web1/seccomp"]
    assert values(text, "lxc.mount.auto") == ["proc:mixed sys:mixed cgroup:mixed"]


def test_network_is_empty_unless_a_layer_adds_one():
    assert values(render(spec()), "lxc.net.0.type") == ["empty"]
    text = render(spec(extra=["lxc.net.0.type = veth", "lxc.net.0.name = eth0"]))
    assert values(text, "lxc.net.0.type") == ["veth"]
    assert values(text, "lxc.net.0.name") == ["eth0"]


def test_template_snippet_comes_last():
    snippet = "lxc.init.cmd = /sbin/init\nlxc.signal.halt = SIGRTMIN+3\n"
    text = render(spec(template_conf=snippet, extra=["lxc.environment = A=1"]))
    lines = text.splitlines()
    assert lines[-2:] == ["lxc.init.cmd = /sbin/init", "lxc.signal.halt = SIGRTMIN+3"]
    assert lines.index("lxc.environment = A=1") < lines.index("lxc.init.cmd = /sbin/init")
    assert "# from the template" not in render(spec(template_conf="  \n"))


@pytest.mark.parametrize("name,halt", [("busybox", "SIGUSR1"), ("debian", "SIGRTMIN+3")])
def test_shipped_templates_have_an_init_and_a_halt_signal(name, halt):
    tpl = Templates(TEMPLATES, Path("/nonexistent")).get(name)
    text = render(spec(template_conf=tpl.lxc_conf))
    assert values(text, "lxc.init.cmd") == ["/sbin/init"]
    assert values(text, "lxc.signal.halt") == [halt]
    assert tpl.default_version in tpl.versions
