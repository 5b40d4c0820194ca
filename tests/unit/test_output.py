"""osctl's output: table, JSON, YAML, CSV; columns with -o; -H."""

from __future__ import annotations

import json

import click
import pytest
import yaml

from osctl.cli.common import Settings, show
from osctl.output import cell, render

ROWS = [
    {"id": "c1", "state": "running", "init_pid": 123, "autostart": True, "dns": ["192.0.2.1"]},
    {"id": "web-22", "state": "stopped", "init_pid": None, "autostart": False, "dns": []},
]


def test_cells():
    assert [cell(v) for v in (None, True, False, 1.234, [1, 2], [], {"a": 1}, b"x", "s")] == \
        ["-", "yes", "no", "1.23", "1,2", "-", "a=1", "x", "s"]


def test_table_aligns_columns_under_upper_case_headers():
    out = render(ROWS, "table", ["id", "state", "init_pid"])
    assert out.splitlines() == [
        "ID      STATE    INIT_PID",
        "c1      running  123",
        "web-22  stopped  -",
    ]


def test_table_without_header():
    assert render(ROWS, "table", ["id"], header=False).splitlines() == ["c1", "web-22"]


def test_table_of_one_object_is_key_per_line():
    out = render(ROWS[0], "table")
    assert out.splitlines()[0] == "ID         c1"
    assert "AUTOSTART  yes" in out.splitlines()


def test_json_and_yaml_keep_types():
    assert json.loads(render(ROWS, "json")) == ROWS
    assert yaml.safe_load(render(ROWS, "yaml")) == ROWS
    assert json.loads(render(ROWS[0], "json")) == ROWS[0]
    assert json.loads(render({"b": b"\xffx"}, "json")) == {"b": "\ufffdx"}


def test_json_with_columns_selects_keys():
    assert json.loads(render(ROWS, "json", ["id", "state"])) == [
        {"id": "c1", "state": "running"}, {"id": "web-22", "state": "stopped"}]


def test_csv():
    assert render(ROWS, "csv", ["id", "init_pid", "dns"]).splitlines() == [
        "id,init_pid,dns", "c1,123,192.0.2.1", "web-22,-,-"]
    assert render(ROWS, "csv", ["id"], header=False).splitlines() == ["c1", "web-22"]
    quoted = render([{"a": 'x,"y"'}], "csv")
    assert quoted.splitlines()[1] == '"x,""y"""'


def test_empty_list():
    assert render([], "table", ["id"]) == "ID"
    assert render([], "json") == "[]"


@pytest.mark.parametrize("fmt", ["table", "json", "yaml", "csv"])
def test_unknown_column_is_an_error_naming_the_known_ones(fmt):
    with pytest.raises(ValueError) as e:
        render(ROWS, fmt, ["id", "bogus"])
    assert "bogus" in str(e.value) and "state" in str(e.value)


def test_cli_turns_an_unknown_column_into_a_usage_error(capsys):
    with pytest.raises(click.UsageError, match="bogus"):
        show(Settings(columns=["bogus"]), ROWS, ["id"])
    show(Settings(format="csv", header=False), ROWS, ["id", "state"])
    assert capsys.readouterr().out == "c1,running\nweb-22,stopped\n"


def test_cli_usage_error_exit_code():
    from click.testing import CliRunner

    from osctl.cli.main import cli

    res = CliRunner().invoke(cli, ["--format", "xml", "ct", "ls"])
    assert res.exit_code == 2 and "xml" in res.output


def test_default_columns_may_be_missing_from_every_row(capsys):
    rows = [{"cmd": "ct.new", "result": "ok"}]
    show(Settings(), rows, ["cmd", "result", "error"])
    assert capsys.readouterr().out.splitlines() == ["CMD     RESULT", "ct.new  ok"]
    show(Settings(), [], ["cmd", "error"])
    assert capsys.readouterr().out == "CMD  ERROR\n"
    with pytest.raises(click.UsageError, match="error"):
        show(Settings(columns=["cmd", "error"]), rows, ["cmd"])
