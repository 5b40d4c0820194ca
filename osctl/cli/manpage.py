"""osctl manpage: osctl(8) in roff, made from the click tree, so the page
and ``--help`` never disagree.

Small and our own: click-man writes one page per command to files, and
argparse-manpage knows argparse only; one page with every command is what
``man osctl`` should show, and it is a walk of the tree.
"""

from __future__ import annotations

import datetime
import inspect

import click


def roff(text: str) -> str:
    """Text as roff reads it: backslashes and hyphens escaped, no line
    starting with a control character."""
    out = []
    for line in text.replace("\\", "\\e").replace("-", "\\-").splitlines():
        out.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(out)


def _help(cmd: click.Command) -> str:
    """A command's help as paragraphs; click's \\b blocks stay as typed."""
    text = inspect.cleandoc(cmd.help or "")
    out = []
    for para in text.split("\n\n"):
        if para.startswith("\b\n"):
            out.append(".nf\n" + roff(para[2:]) + "\n.fi")
        else:
            out.append(roff(" ".join(para.split())))
    return "\n.PP\n".join(p for p in out if p)


def _options(ctx: click.Context, cmd: click.Command) -> list[str]:
    out = []
    for param in cmd.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, text = record
        out += [".TP", f"\\fB{roff(names)}\\fR", roff(" ".join(text.split()))]
    return out


def _commands(parent: click.Context, cmd: click.Command, path: str) -> list[str]:
    ctx = click.Context(cmd, info_name=path.rpartition(" ")[2], parent=parent)
    usage = " ".join(cmd.collect_usage_pieces(ctx))
    lines = []
    if path != "osctl":
        lines += [f'.SS "{roff(path)} {roff(usage)}"', _help(cmd), *_options(ctx, cmd)]
    if isinstance(cmd, click.Group):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                lines += _commands(ctx, sub, f"{path} {name}")
    return lines


def page(cli: click.Group, version: str = "", date: datetime.date | None = None) -> str:
    """osctl(8): name, synopsis, description and global options from the
    root, then one subsection per command with its options."""
    ctx = click.Context(cli, info_name="osctl")
    day = (date or datetime.date.today()).isoformat()
    lines = [f'.TH OSCTL 8 "{day}" "osctld {roff(version)}" "System Administration"',
             ".SH NAME", "osctl \\- " + roff(cli.get_short_help_str(limit=200)),
             ".SH SYNOPSIS", "\\fBosctl\\fR [\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...",
             ".SH DESCRIPTION", _help(cli), ".SH OPTIONS", *_options(ctx, cli),
             ".SH COMMANDS", *_commands(None, cli, "osctl")]  # type: ignore[arg-type]
    return "\n".join(lines) + "\n"


@click.command("manpage")
@click.pass_context
def manpage(ctx):
    """Print osctl's manual page (roff), made from its commands' help.

    \b
    Examples:
      osctl manpage | man -l -
      osctl manpage > /usr/local/share/man/man8/osctl.8
    """
    from importlib.metadata import version

    click.echo(page(ctx.find_root().command, version("osctld")), nl=False)


