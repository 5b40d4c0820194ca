"""osctl ct: containers."""

from __future__ import annotations

import sys

import click

from .common import call, lifecycle_command, pass_settings, show

LS_COLUMNS = ["pool", "id", "user", "distribution", "version", "state", "init_pid", "hostname"]


@click.group("ct")
def ct():
    """Containers: create, start, enter, change, delete."""


@ct.command("new")
@click.argument("id")
@click.option("--user", "-u", required=True, help="Owner: a user name, or POOL:USER.")
@click.option("--template", "-t", default="busybox", show_default=True,
              help="Template to build from (osctl template ls).")
@click.option("--version", "-v", "version", help="Distribution version [default: the template's].")
@click.option("--pool", "-p", help="Pool [default: the user's].")
@click.option("--hostname", help="Hostname inside [default: the container's id].")
@click.option("--dns", "dns_resolvers", multiple=True, metavar="IP", help="DNS resolver (repeatable).")
@click.option("--autostart", is_flag=True, help="Start when osctld starts.")
@click.option("--start", "start_after", is_flag=True, help="Start it once created.")
@pass_settings
def new(s, id, user, template, version, pool, hostname, dns_resolvers, autostart, start_after):
    """Create container ID owned by USER from a template.

    The template's rootfs is built once per pool (the debian template takes
    minutes the first time) and each container is a snapshot or copy of it.
    Progress goes to stderr; Ctrl-C cancels and rolls back.
    """
    res = call(s, "ct.new", {"id": id, "user": user, "template": template, "version": version,
                             "pool": pool, "hostname": hostname,
                             "dns_resolvers": list(dns_resolvers) or None, "autostart": autostart})
    if start_after:
        res = call(s, "ct.start", {"id": f"{res['pool']}:{id}"})
    show(s, res)


@ct.command("ls")
@click.option("--pool", "-p", help="Only this pool.")
@click.option("--user", "-u", help="Only this user's.")
@click.option("--state", "-s", help="Only in this state (running, stopped, ...).")
@pass_settings
def ls(s, pool, user, state):
    """List containers."""
    show(s, call(s, "ct.ls", {"pool": pool, "user": user, "state": state}), LS_COLUMNS)


@ct.command("show")
@click.argument("id")
@pass_settings
def show_(s, id):
    """Show one container."""
    show(s, call(s, "ct.show", {"id": id}))


def _timeout() -> click.Option:
    return click.Option(["--timeout", "-t"], type=int, default=60, show_default=True,
                        help="Seconds to wait for a clean shutdown before killing.")


lifecycle_command(ct, "ct", "start", "Start container ID.", LS_COLUMNS)
lifecycle_command(ct, "ct", "stop", "Stop container ID cleanly; kill it after --timeout.",
                  LS_COLUMNS, _timeout())
lifecycle_command(ct, "ct", "restart", "Stop container ID, then start it.", LS_COLUMNS, _timeout())
lifecycle_command(ct, "ct", "kill", "Stop container ID at once, without a clean shutdown.", LS_COLUMNS)


@ct.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("id")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--env", "-e", multiple=True, metavar="K=V", help="Environment variable.")
@pass_settings
def exec_(s, id, argv, env):
    """Run a command in container ID: osctl ct exec ID -- CMD ARGS...

    The command runs on osctl's own stdin, stdout and stderr, and osctl
    exits with its exit code.
    """
    env_map = dict(e.split("=", 1) for e in env if "=" in e)
    res = call(s, "ct.exec", {"id": id, "argv": list(argv), "env": env_map or None}, fds=(0, 1, 2))
    sys.exit(res["exit_code"])


@ct.command("attach")
@click.argument("id")
@pass_settings
def attach(s, id):
    """Open a shell in container ID on this terminal."""
    import os

    env = {"TERM": os.environ.get("TERM", "xterm")}
    res = call(s, "ct.attach", {"id": id, "env": env}, fds=(0, 1, 2))
    sys.exit(res["exit_code"])


@ct.command("console")
@click.argument("id")
@click.option("--tty", type=int, default=0, show_default=True, help="0 is /dev/console.")
@pass_settings
def console(s, id, tty):
    """Attach to the console of container ID (Ctrl-a q to leave)."""
    res = call(s, "ct.console", {"id": id, "tty": tty}, fds=(0, 1, 2))
    sys.exit(res["exit_code"])


@ct.command("del")
@click.argument("id")
@click.option("--force", "-f", is_flag=True, help="Stop it first if it runs.")
@pass_settings
def delete(s, id, force):
    """Delete container ID and its data."""
    show(s, call(s, "ct.del", {"id": id, "force": force}))


@ct.group("set")
def set_():
    """Change a container's settings."""


@set_.command("hostname")
@click.argument("id")
@click.argument("hostname")
@pass_settings
def set_hostname(s, id, hostname):
    """Set the hostname (live on a running container)."""
    show(s, call(s, "ct.set", {"id": id, "hostname": hostname}))


@set_.command("dns-resolvers")
@click.argument("id")
@click.argument("resolvers", nargs=-1, required=True)
@pass_settings
def set_dns(s, id, resolvers):
    """Set the DNS resolvers written to /etc/resolv.conf."""
    show(s, call(s, "ct.set", {"id": id, "dns_resolvers": list(resolvers)}))


@set_.command("autostart")
@click.argument("id")
@click.argument("value", type=click.Choice(["on", "off"]))
@click.option("--priority", type=int, help="Lower starts first [default 10].")
@pass_settings
def set_autostart(s, id, value, priority):
    """Start (or not) when osctld starts."""
    show(s, call(s, "ct.set", {"id": id, "autostart": value == "on", "autostart_priority": priority}))


@ct.command("passwd")
@click.argument("id")
@click.argument("user")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="The new password [default: asked for].")
@pass_settings
def passwd(s, id, user, password):
    """Set USER's password inside running container ID."""
    call(s, "ct.passwd", {"id": id, "user": user, "password": password})


COMMANDS = [ct]
