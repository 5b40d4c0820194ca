"""osctl completion bash|zsh|fish: click's shell completion, with the names
of containers, VMs, users, groups and pools asked of the daemon.

The names are filled in on parameters by their place in the tree
(``install``, run only when the shell asks for completions, so an ordinary
call pays nothing): an ``ID`` under ``ct`` or ``vm``, and ``--user``,
``--group`` and ``--pool`` anywhere. The daemon is asked with a short
timeout, and a daemon that is down or refuses completes nothing, quietly:
a tab must never print an error into the operator's command line.
"""

from __future__ import annotations

from typing import Callable

import click
from click.shell_completion import CompletionItem, get_completion_class

from ..client import Client

# The shell's request: click sets this variable in the scripts it makes.
COMPLETE_VAR = "_OSCTL_COMPLETE"
SHELLS = ("bash", "zsh", "fish")
TIMEOUT = 1.0  # seconds: a tab that hangs is worse than none

# Kind of name: the listing verb and the field that holds the name.
LISTINGS = {"ct": ("ct.ls", "id"), "vm": ("vm.ls", "id"), "user": ("user.ls", "name"),
            "group": ("group.ls", "path"), "pool": ("pool.ls", "name")}
# Options that take a name of a kind, wherever they are.
OPTIONS = {"user": "user", "group": "group", "pool": "pool"}


def names(kind: str, socket: str | None = None) -> list[str]:
    """The names of ``kind`` the daemon has; none if it cannot say."""
    verb, key = LISTINGS[kind]
    try:
        with Client(socket, timeout=TIMEOUT) as client:
            return sorted({str(row[key]) for row in client.call(verb) if key in row})
    except Exception:  # down, refused, slow, an old daemon: complete nothing
        return []


def completer(kind: str) -> Callable[[click.Context, click.Parameter, str], list[CompletionItem]]:
    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
        root = ctx.find_root()
        socket = root.params.get("socket") if root.params else None
        return [CompletionItem(n) for n in names(kind, socket) if n.startswith(incomplete)]
    return complete


def _kind(path: tuple[str, ...], param: click.Parameter) -> str | None:
    if isinstance(param, click.Argument) and param.name in ("id", "ids") and path[:1] in (("ct",), ("vm",)):
        return path[0]
    if isinstance(param, click.Option):
        return OPTIONS.get(param.name or "")
    return None


def install(group: click.Group, path: tuple[str, ...] = ()) -> None:
    """Give every parameter of ``group``'s tree that takes a name its
    completion from the daemon (one it declares itself is kept)."""
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None:
            continue
        for param in cmd.params:
            kind = _kind(path + (name,), param)
            if kind and param._custom_shell_complete is None:
                param._custom_shell_complete = completer(kind)
        if isinstance(cmd, click.Group):
            install(cmd, path + (name,))


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx, shell):
    """Print the completion script for SHELL.

    Container, VM, user, group and pool names are completed from the
    running daemon.

    \b
    Examples:
      osctl completion bash > /etc/bash_completion.d/osctl
      echo 'eval "$(osctl completion zsh)"' >> ~/.zshrc
      osctl completion fish > ~/.config/fish/completions/osctl.fish
    """
    cls = get_completion_class(shell)
    assert cls is not None  # click has all three
    click.echo(cls(ctx.find_root().command, {}, "osctl", COMPLETE_VAR).source())


