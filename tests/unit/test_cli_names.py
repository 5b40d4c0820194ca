"""What osctl puts on the wire: the verbs' dotted names, and limits and
quotas by the daemon's own names however the operator spells them."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from osctl.cli import common
from osctl.cli.main import cli


class Recorder:
    """A client that keeps the requests and answers each with nothing."""

    def __init__(self):
        self.sent: list[tuple[str, dict]] = []

    def send(self, cmd: str, args: dict, fds=()) -> int:
        self.sent.append((cmd, args))
        return len(self.sent)

    def wait(self, req: int, progress=None):
        return {}


@pytest.fixture
def wire(monkeypatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(common.Settings, "client", lambda self: rec)
    return rec


@pytest.mark.parametrize("argv, cmd, args", [
    (["ct", "netif", "ip", "add", "c1", "eth0", "192.0.2.1"], "ct.netif.ip.add",
     {"id": "c1", "name": "eth0", "address": "192.0.2.1"}),
    (["vm", "netif", "ip", "add", "v1", "eth0", "192.0.2.1"], "vm.netif.ip.add",
     {"id": "v1", "name": "eth0", "address": "192.0.2.1"}),
    (["vm", "netif", "route", "ls", "v1"], "vm.netif.route.ls", {"id": "v1"}),
    (["ct", "netif", "rename", "c1", "eth0", "eth1"], "ct.netif.rename",
     {"id": "c1", "name": "eth0", "new_name": "eth1"}),
    (["ct", "devices", "ls", "c1"], "ct.device.ls", {"id": "c1"}),
    (["ct", "set", "cpu-limit", "c1", "1.5"], "ct.set", {"id": "c1", "limits": {"cpu_limit": "1.5"}}),
    (["ct", "unset", "c1", "cpu-limit"], "ct.set", {"id": "c1", "limits": {"cpu_limit": "none"}}),
    (["group", "set", "/g", "--cpu-limit", "2"], "group.set", {"path": "/g", "limits": {"cpu_limit": "2"}}),
    (["user", "set", "quota", "u1", "ipv6-64=4", "cpus=2"], "user.set",
     {"name": "u1", "quota": {"ipv6_64": "4", "cpus": "2"}}),
    (["account", "new", "s-backup", "--uid", "991", "--service", "--group", "/prod"], "account.new",
     {"name": "s-backup", "uid": 991, "group": "/prod"}),
    (["permission", "add", "s-backup@/prod", "/prod/db", "sudo-srv", "-p", "tank"],
     "permission.add", {"account": "s-backup@/prod", "group": "/prod/db",
                        "permission": "sudo-srv", "pool": "tank"}),
    (["permission", "del", "front", "/prod"], "permission.del", {"account": "front", "group": "/prod"}),
    (["permission", "ls", "front"], "permission.ls", {"account": "front"}),
])
def test_the_cli_speaks_the_new_names(wire, argv, cmd, args):
    res = CliRunner().invoke(cli, argv)
    assert res.exit_code == 0, res.output
    # A change reads the object before and after, to print what changed.
    assert [s for s in wire.sent if not s[0].endswith(".show")] == [(cmd, args)]
