"""osctl's command line without a daemon: output options after the
command, sorting and the column list, what a change prints, +SIZE grows,
one boolean vocabulary, bulk actions, and groups loaded only when they run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from osctl.cli import common
from osctl.cli.main import GROUPS, cli
from osctl.protocol import OsctlError

GIB = 1 << 30


def ct(id: str, **kw) -> dict:
    return {"pool": "default", "id": id, "user": "alice", "group": "/default", "distribution": "busybox",
            "version": "1", "state": "running", "init_pid": 100, "hostname": id, "disk": None,
            "limits": {}, "features": [], "netifs": [], **kw}


class FakeDaemon:
    """Answers requests from a table (a value, an OsctlError, or a function
    of the arguments) and keeps them; replies come in the order sent."""

    def __init__(self, answers: dict):
        self.answers = answers
        self.sent: list[tuple[str, dict]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._replies: dict[int, tuple] = {}

    def _answer(self, cmd: str, args: dict):
        a = self.answers.get(cmd, {})
        return a(args) if callable(a) else a

    def send(self, cmd: str, args: dict, fds=()) -> int:
        self.sent.append((cmd, args))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self._replies[len(self.sent)] = (cmd, args)
        return len(self.sent)

    def wait_any(self, reqs, progress=None):
        req = min(reqs)
        cmd, args = self._replies.pop(req)
        self.in_flight -= 1
        try:
            res = self._answer(cmd, args)
        except OsctlError as e:
            return req, None, e
        if isinstance(res, OsctlError):
            return req, None, res
        return req, res, None

    def wait(self, req, progress=None):
        _, res, err = self.wait_any({req})
        if err:
            raise err
        return res

    def verbs(self) -> list[str]:
        return [c for c, _ in self.sent]


@pytest.fixture
def daemon(monkeypatch):
    d = FakeDaemon({})
    monkeypatch.setattr(common.Settings, "client", lambda self: d)
    return d


def run(*argv: str):
    return CliRunner().invoke(cli, list(argv))


def test_output_options_work_after_the_command_as_well_as_before(daemon):
    daemon.answers["ct.ls"] = [ct("web1"), ct("db1", state="stopped")]
    before, after = run("-o", "id,state", "ct", "ls"), run("ct", "ls", "-o", "id,state")
    assert before.exit_code == after.exit_code == 0, after.output
    assert before.output == after.output == "ID    STATE\nweb1  running\ndb1   stopped\n"
    assert json.loads(run("ct", "ls", "-j").output)[0]["id"] == "web1"
    assert run("ct", "ls", "-H", "-o", "id").output == "web1\ndb1\n"
    assert run("ct", "ls", "--format", "csv", "-o", "id").output == "id\nweb1\ndb1\n"


def test_a_commands_own_short_option_wins_over_an_output_one(daemon):
    # ct del -f is --force; --format is there long only.
    daemon.answers["ct.del"] = {"id": "web1", "pool": "default"}
    res = run("ct", "del", "web1", "-f", "--format", "json")
    assert res.exit_code == 0, res.output
    assert daemon.sent == [("ct.del", {"id": "web1", "force": True})]
    assert json.loads(res.output) == {"id": "web1", "pool": "default"}


def test_exec_leaves_the_programs_options_alone(daemon):
    daemon.answers["ct.exec"] = {"exit_code": 0}
    res = run("ct", "exec", "web1", "ps", "-o", "pid")
    assert res.exit_code == 0, res.output
    assert daemon.sent[0][1]["argv"] == ["ps", "-o", "pid"]


def test_ct_ls_sorts_lists_its_columns_and_shows_addresses(daemon):
    netifs = [{"name": "eth0", "addresses": ["192.0.2.10/32", "2001:db8::10/128", "198.51.100.1/24"]}]
    daemon.answers["ct.ls"] = [ct("web1", netifs=netifs, limits={"memory": 2 * GIB}),
                               ct("db1", limits={"memory": 512 << 20})]
    res = run("ct", "ls", "-o", "id,ipv4,ipv6,memory", "-s", "memory")
    assert res.output.splitlines() == [
        "ID    IPV4                        IPV6          MEMORY",
        "db1   -                           -             512M",
        "web1  192.0.2.10,198.51.100.1/24  2001:db8::10  2G",
    ]
    assert run("ct", "ls", "-o", "id", "-s", "-id", "-H").output == "web1\ndb1\n"
    assert run("ct", "ls", "-o", "id,memory", "-p", "tank", "--parsable", "-H").output.split() == [
        "web1", str(2 * GIB), "db1", str(512 << 20)]
    assert daemon.sent[-1] == ("ct.ls", {"pool": "tank"})
    listed = run("ct", "ls", "-L")
    assert listed.exit_code == 0 and "ipv4" in listed.output and "DESCRIPTION" in listed.output
    assert "ipv6" in run("ct", "ls", "--help").output
    bad = run("ct", "ls", "-s", "bogus")
    assert bad.exit_code == 2 and "bogus" in bad.output


def test_a_change_prints_what_changed_or_nothing_quietly(daemon):
    shows = iter([ct("web1", limits={"memory": GIB}), ct("web1", limits={"memory": 2 * GIB})])
    daemon.answers["ct.show"] = lambda _a: next(shows)
    daemon.answers["ct.set"] = ct("web1", limits={"memory": 2 * GIB})
    res = run("ct", "set", "memory", "web1", "2G")
    assert res.output == "web1: limits.memory 1G -> 2G\n"
    assert daemon.verbs() == ["ct.show", "ct.set", "ct.show"]
    daemon.sent.clear()
    assert run("ct", "set", "memory", "web1", "2G", "-q").output == ""
    assert daemon.verbs() == ["ct.set"]
    # JSON keeps the whole object, as scripts read it.
    assert json.loads(run("-j", "ct", "set", "memory", "web1", "2G").output)["limits"] == {"memory": 2 * GIB}


def test_a_change_lists_added_and_removed_items_and_what_the_command_did(daemon):
    shows = iter([ct("web1", features=["fuse"]), ct("web1", features=["tun", "kvm"])])
    daemon.answers["ct.show"] = lambda _a: next(shows)
    daemon.answers["ct.feature.enable"] = {**ct("web1", features=["tun", "kvm"]), "restarted": True}
    res = run("ct", "feature", "enable", "web1", "tun", "kvm", "--restart")
    assert res.output.splitlines() == ["web1: features +tun +kvm -fuse", "web1: restarted yes"]
    assert daemon.sent[1] == ("ct.feature.enable", {"id": "web1", "names": ["tun", "kvm"],
                                                   "restart": True, "timeout": 60})


def test_a_netif_change_names_the_netif(daemon):
    before = ct("web1", netifs=[{"name": "eth0", "addresses": []}])
    after = ct("web1", netifs=[{"name": "eth0", "addresses": ["192.0.2.10/32"]}])
    shows = iter([before, after])
    daemon.answers["ct.show"] = lambda _a: next(shows)
    daemon.answers["ct.netif.ip.add"] = after["netifs"][0]  # the netif: no notes of its keys
    res = run("ct", "netif", "ip", "add", "web1", "eth0", "192.0.2.10")
    assert res.output == "web1: netifs.eth0.addresses +192.0.2.10/32\n"


@pytest.mark.parametrize("argv, current, sent", [
    (["ct", "set", "disk", "web1", "+10G"], ct("web1", disk=10 * GIB), {"disk": str(20 * GIB)}),
    (["ct", "set", "memory", "web1", "+512M"], ct("web1", limits={"memory": GIB}),
     {"limits": {"memory": str(GIB + (512 << 20))}}),
    (["ct", "set", "disk", "web1", "20G"], None, {"disk": "20G"}),
])
def test_ct_sizes_grow_with_a_plus(daemon, argv, current, sent):
    daemon.answers["ct.show"] = current
    assert run("-q", *argv).exit_code == 0
    assert daemon.sent[-1] == ("ct.set", {"id": "web1", **sent})


def test_vm_disk_grows_with_a_plus_and_a_bad_size_is_a_usage_error(daemon):
    daemon.answers["vm.show"] = {"id": "v1", "disk": 10 * GIB, "memory": GIB}
    assert run("-q", "vm", "set", "disk", "v1", "+10G").exit_code == 0
    assert daemon.sent[-1] == ("vm.set", {"id": "v1", "disk": str(20 * GIB)})
    bad = run("-q", "vm", "set", "disk", "v1", "+lots")
    assert bad.exit_code == 2 and "lots" in bad.output


@pytest.mark.parametrize("word, value", [("on", True), ("yes", True), ("true", True),
                                         ("off", False), ("no", False), ("false", False)])
def test_one_boolean_vocabulary(daemon, word, value):
    assert run("-q", "ct", "set", "autostart", "web1", word).exit_code == 0
    assert daemon.sent[-1] == ("ct.set", {"id": "web1", "autostart": value})
    assert run("-q", "vm", "set", "online", "v1", word).exit_code == 0
    assert daemon.sent[-1] == ("vm.set", {"id": "v1", "online": value})


def test_bulk_action_on_several_ids_reports_each_and_fails_if_one_did(daemon):
    def stop(args):
        if args["id"] == "bad":
            raise OsctlError("conflict", "it is busy")
        return ct(args["id"], state="stopped")

    daemon.answers["ct.stop"] = stop
    daemon.answers["daemon.status"] = {"parallelism": 2}
    res = run("ct", "stop", "web1", "bad", "db1", "-t", "5")
    assert res.exit_code == 6  # conflict, the one failure's own code
    assert res.stdout.splitlines() == ["web1  stopped", "bad   error conflict: it is busy", "db1   stopped"]
    assert "1 of 3 failed" in res.stderr
    assert [a for c, a in daemon.sent if c == "ct.stop"] == [
        {"id": i, "timeout": 5} for i in ("web1", "bad", "db1")]
    assert daemon.most_in_flight <= 2


def test_bulk_action_picks_by_filter_runs_in_parallel_and_lists_in_json(daemon):
    daemon.answers["ct.ls"] = [ct(f"c{i}", group="/prod" if i % 2 else "/default") for i in range(6)]
    daemon.answers["daemon.status"] = {"parallelism": 3}
    daemon.answers["ct.start"] = lambda a: ct(a["id"].split(":")[1])
    res = run("ct", "start", "-u", "alice", "-g", "/prod", "-j")
    assert res.exit_code == 0, res.output
    assert daemon.sent[0] == ("ct.ls", {"user": "alice"})
    assert json.loads(res.stdout) == [{"id": f"c{i}", "pool": "default", "ok": True, "state": "running"}
                                      for i in (1, 3, 5)]
    assert daemon.most_in_flight == 3


def test_bulk_needs_ids_or_a_selection_not_both(daemon):
    assert run("ct", "stop").exit_code == 2
    assert run("ct", "stop", "web1", "--all").exit_code == 2
    assert daemon.sent == []


def test_one_id_is_the_plain_call(daemon):
    daemon.answers["ct.start"] = ct("web1")
    res = run("ct", "start", "web1")
    assert (res.exit_code, res.output) == (0, "web1: running\n")
    assert json.loads(run("-j", "ct", "start", "web1").output)["init_pid"] == 100
    daemon.answers["ct.start"] = OsctlError("not_found", "no container web9")
    res = run("ct", "start", "web9")
    assert res.exit_code != 0 and daemon.verbs()[-1] == "ct.start"


def test_feature_switch_on_many(daemon):
    daemon.answers["ct.ls"] = [ct("a"), ct("b")]
    daemon.answers["ct.feature.disable"] = lambda a: ct(a["id"], features=[])
    res = run("ct", "feature", "disable", "--all", "tun", "fuse", "--no-restart")
    assert res.exit_code == 0, res.output
    assert [a for c, a in daemon.sent if c == "ct.feature.disable"] == [
        {"id": f"default:{i}", "names": ["tun", "fuse"], "restart": False, "timeout": 60} for i in "ab"]
    daemon.sent.clear()
    res = run("ct", "feature", "enable", "a,b", "tun")
    assert [a["id"] for c, a in daemon.sent if c == "ct.feature.enable"] == ["a", "b"]


def test_vm_bulk_and_op_commands(daemon):
    daemon.answers["vm.kill"] = lambda a: {"id": a["id"], "state": "stopped"}
    assert run("vm", "kill", "v1", "v2").output.splitlines() == ["v1  stopped", "v2  stopped"]
    daemon.answers["op.ls"] = ["3:1", "4:2"]
    assert run("op", "ls", "-H").output == "3:1\n4:2\n"
    assert run("op", "cancel", "3:1").output == "3:1: cancelled\n"
    assert daemon.sent[-1] == ("op.cancel", {"op": "3:1"})


def test_help_imports_no_command_group_and_summaries_match():
    code = ("import sys; from osctl.cli.main import main; sys.argv = ['osctl', '--help']\n"
            "try: main()\nexcept SystemExit: pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('osctl.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = out.strip().splitlines()[-1]
    assert "osctl.cli.ct" not in loaded and "osctl.cli.vm" not in loaded and "osctl.client" not in loaded
    from click import Context

    from osctl.cli.groups import Group

    assert {name: summary for name, (_, summary) in GROUPS.items()} == cli.summaries

    def check(group: Group) -> None:
        for name, summary in group.summaries.items():
            cmd = group.get_command(Context(group), name)
            assert cmd is not None and cmd.get_short_help_str(limit=200) == summary, name
        for cmd in list(group.commands.values()):
            if isinstance(cmd, Group):
                check(cmd)

    check(cli)


def test_every_command_has_an_example():
    from click import Context, Group

    def leaves(group, path):
        for name in group.list_commands(Context(group)):
            cmd = group.get_command(Context(group), name)
            if isinstance(cmd, Group):
                yield from leaves(cmd, path + [name])
            else:
                yield path + [name], cmd

    missing = [" ".join(p) for p, cmd in leaves(cli, []) if "Example" not in (cmd.help or "")]
    assert missing == []


def test_every_listing_sorts_and_lists_the_columns_its_rows_have(daemon):
    daemon.answers["user.ls"] = [{"pool": "default", "name": "bob", "uid_map": [], "gid_map": [],
                                  "containers": 2, "quota": {}},
                                 {"pool": "default", "name": "alice", "uid_map": [], "gid_map": [],
                                  "containers": 10, "quota": {}}]
    assert run("user", "ls", "-s", "-containers", "-o", "name", "-H").output == "alice\nbob\n"
    listed = [line.split()[:2] for line in run("user", "ls", "-L", "-H").output.splitlines()]
    assert ["name", "yes"] in listed and ["quota", "no"] in listed


def test_a_named_object_added_or_removed_is_one_line():
    from osctl.cli.common import differences

    eth0 = {"name": "eth0", "addresses": ["192.0.2.1/32"], "max_tx": None}
    lan0 = {"name": "lan0", "addresses": [], "max_tx": 100_000_000}
    assert differences(ct("w", netifs=[eth0]), ct("w", netifs=[eth0, lan0])) == ["netifs +lan0"]
    assert differences(ct("w", netifs=[eth0, lan0]), ct("w", netifs=[lan0])) == ["netifs -eth0"]
    renamed = {**eth0, "name": "eth9"}
    assert differences(ct("w", netifs=[eth0]), ct("w", netifs=[renamed])) == ["netifs +eth9 -eth0"]
    assert differences(ct("w", netifs=[lan0]), ct("w", netifs=[{**lan0, "max_tx": 10**9}])) == [
        "netifs.lan0.max_tx 100M/s -> 1G/s"]


def test_group_and_quota_sizes_grow_with_a_plus(daemon):
    daemon.answers["group.show"] = {"path": "/prod", "limits": {"memory": 8 * GIB}}
    assert run("-q", "group", "set", "/prod", "--memory", "+8G", "--pids", "100").exit_code == 0
    assert daemon.sent[-1] == ("group.set", {"path": "/prod", "limits": {"memory": str(16 * GIB),
                                                                          "pids": "100"}})
    daemon.answers["user.show"] = {"name": "alice", "quota": {"disk": 100 * GIB}}
    assert run("-q", "user", "set", "quota", "alice", "disk=+50G", "cpus=4").exit_code == 0
    assert daemon.sent[-1] == ("user.set", {"name": "alice", "quota": {"disk": str(150 * GIB),
                                                                         "cpus": "4"}})


def test_group_settings_alone_are_sent_without_limits(daemon):
    daemon.answers["group.show"] = {"path": "/prod", "limits": {}, "settings": {}}
    res = run("-q", "group", "set", "/prod", "timezone", "Asia/Tokyo", "maintenance-start", "23")
    assert res.exit_code == 0, res.output
    assert daemon.sent[-1] == ("group.set", {"path": "/prod", "settings": {
        "timezone": "Asia/Tokyo", "maintenance-start": "23"}})
