"""osctl completion and osctl manpage without a daemon: names come from a
stand-in client, a daemon that is down completes nothing quietly, and the
man page is made from the click tree."""

from __future__ import annotations

import subprocess

import pytest
from click.shell_completion import ShellComplete
from click.testing import CliRunner

from osctl.cli import completion
from osctl.cli.main import cli
from osctl.cli.manpage import page, roff

ROWS = {"ct.ls": [{"id": "web1"}, {"id": "web2"}, {"id": "db1"}], "vm.ls": [{"id": "win1"}],
        "user.ls": [{"name": "alice"}], "group.ls": [{"path": "/"}, {"path": "/t1"}],
        "pool.ls": [{"name": "default"}, {"name": "tank"}]}


class FakeClient:
    def __init__(self, path=None, timeout=None):
        assert timeout == completion.TIMEOUT

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def call(self, verb, args=None):
        return ROWS[verb]


def complete(args: list[str], incomplete: str) -> list[str]:
    completion.install(cli)
    return [c.value for c in ShellComplete(cli, {}, "osctl", completion.COMPLETE_VAR)
            .get_completions(args, incomplete)]


def test_names_come_from_the_daemon_by_where_they_are_typed(monkeypatch):
    monkeypatch.setattr(completion, "Client", FakeClient)
    assert complete(["ct", "start"], "web") == ["web1", "web2"]
    assert complete(["vm", "start"], "") == ["win1"]
    assert complete(["ct", "ls", "--pool"], "t") == ["tank"]
    assert complete(["ct", "new", "x", "--user"], "") == ["alice"]


def test_a_daemon_that_is_down_completes_nothing_quietly(tmp_path, capsys):
    assert complete(["--socket", str(tmp_path / "none.sock"), "ct", "start"], "w") == []
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("shell, words", [("bash", "complete -o nosort -F"), ("zsh", "#compdef osctl"),
                                          ("fish", "complete --no-files --command osctl")])
def test_the_script_for_each_shell(shell, words):
    out = CliRunner().invoke(cli, ["completion", shell])
    assert out.exit_code == 0 and words in out.output and completion.COMPLETE_VAR in out.output
    assert CliRunner().invoke(cli, ["completion", "tcsh"]).exit_code == 2


def test_the_man_page_holds_every_command_and_reads_as_roff():
    text = page(cli, "1.0")
    assert text.startswith('.TH OSCTL 8 "') and ".SH COMMANDS" in text
    assert '.SS "osctl ct start' in text and '.SS "osctl history [OPTIONS] [ID]"' in text
    assert "\\fB\\-s, \\-\\-since TIME\\fR" in text
    assert roff(".start\\n-x") == "\\&.start\\en\\-x"
    shown = subprocess.run(["man", "-l", "-"], input=text, capture_output=True, text=True,
                           env={"MANWIDTH": "100", "PATH": "/usr/bin:/bin"})
    if shown.returncode == 0:  # man is there: it renders the page without warnings
        assert "osctl ct set memory" in shown.stdout and "warning" not in shown.stderr
