"""osctl ct: containers."""

from __future__ import annotations

import sys

import click

from .common import (call, deletion_command, lifecycle_command, limit_args, listing_commands, pass_settings,
                     print_log, show, wire_name)

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
@click.option("--group", "-g", default="/default", show_default=True, help="Resource group.")
@click.option("--cpu-limit", metavar="CORES", help="CPU limit in cores, e.g. 0.5.")
@click.option("--memory", metavar="SIZE", help="Memory limit, e.g. 512M.")
@click.option("--swap", metavar="SIZE", help="Swap beyond memory.")
@click.option("--pids", metavar="N", help="Process limit.")
@click.option("--disk", metavar="SIZE", help="Disk quota (btrfs pools).")
@click.option("--flavor", "-f", help="Flavor: its cores as cpu-limit, memory, swap, disk "
                                     "(osctl flavor ls); the options above override it.")
@pass_settings
def new(s, id, user, template, version, pool, hostname, dns_resolvers, autostart, start_after,
        group, cpu_limit, memory, swap, pids, disk, flavor):
    """Create container ID owned by USER from a template.

    The template's rootfs is built once per pool (the debian template takes
    minutes the first time) and each container is a snapshot or copy of it.
    Progress goes to stderr; Ctrl-C cancels and rolls back.
    """
    res = call(s, "ct.new", {"id": id, "user": user, "template": template, "version": version,
                             "pool": pool, "hostname": hostname,
                             "dns_resolvers": list(dns_resolvers) or None, "autostart": autostart,
                             "group": group, "disk": disk, "flavor": flavor,
                             "limits": limit_args(cpu_limit=cpu_limit, memory=memory, swap=swap,
                                                  pids=pids)})
    if start_after:
        res = call(s, "ct.start", {"id": f"{res['pool']}:{id}"})
    show(s, res)


# Columns of ct ls that cost a read of the container's cgroup: only with -o.
USAGE_COLUMNS = ["cpu_seconds", "memory", "pids", "uptime"]
listing_commands(ct, "ct", "containers", LS_COLUMNS, "Show one container.", USAGE_COLUMNS)


def _timeout() -> click.Option:
    return click.Option(["--timeout", "-t"], type=int, default=60, show_default=True,
                        help="Seconds to wait for a clean shutdown before killing.")


@ct.command("start")
@click.argument("id")
@click.option("--wait", "-w", is_flag=True,
              help="Return once the system inside is up (systemd: is-system-running "
                   "no longer 'starting').")
@click.option("--timeout", "-t", type=int, default=120, show_default=True,
              help="With --wait: seconds to wait before failing.")
@pass_settings
def start(s, id, wait, timeout):
    """Start container ID (one already running: a note, exit 0).

    \b
    Example:
      osctl ct start web1 --wait && osctl ct exec web1 -- uptime
    """
    res = call(s, "ct.start", {"id": id, "wait": wait or None, "timeout": timeout if wait else None})
    if res.get("note") and s.format == "table":
        click.echo(res.pop("note"), err=True)
    show(s, res, LS_COLUMNS)


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


deletion_command(ct, "ct", "container", "its data")


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


@set_.command("prlimit")
@click.argument("id")
@click.argument("name")
@click.argument("soft")
@click.argument("hard", required=False)
@pass_settings
def set_prlimit(s, id, name, soft, hard):
    """Set prlimit NAME (nofile, nproc, memlock, ...) to SOFT [HARD, default SOFT];
    numbers or 'unlimited'. Running processes get it at once, init at each start.
    SOFT none drops it from the config (the default applies from the next start)."""
    if soft == "none":
        show(s, call(s, "ct.prlimit.del", {"id": id, "name": name}))
    else:
        show(s, call(s, "ct.prlimit.set", {"id": id, "name": name, "soft": soft, "hard": hard}))


def _restart_options(cmd):
    cmd = click.option("--no-restart", is_flag=True,
                       help="Do not restart a running container: stage for its next start.")(cmd)
    return click.option("--timeout", "-t", type=int, default=60, show_default=True,
                        help="Seconds to wait for a clean stop when restarting.")(cmd)


@ct.group("feature")
def feature():
    """Features: tun, fuse, kvm, ppp, lxc (nesting), docker, keyctl."""


@feature.command("ls")
@click.argument("id")
@pass_settings
def feature_ls(s, id):
    """List features and whether container ID has them."""
    show(s, call(s, "ct.feature.ls", {"id": id}), ["name", "enabled", "description", "devices"])


def _feature_switch(verb: str, doc: str):
    @click.argument("id")
    @click.argument("names", nargs=-1, required=True)
    @_restart_options
    @pass_settings
    def cmd(s, id, names, no_restart, timeout):
        show(s, call(s, f"ct.feature.{verb}", {"id": id, "names": list(names),
                                               "restart": not no_restart, "timeout": timeout}))

    cmd.__doc__ = doc
    return feature.command(verb)(cmd)


_feature_switch("enable", "Turn features NAMES on for container ID (a running one restarts).")
_feature_switch("disable", "Turn features NAMES off for container ID (a running one restarts).")


@ct.group("devices")
def devices():
    """Device grants: the devices cgroup and nodes in /dev."""


@devices.command("ls")
@click.argument("id")
@pass_settings
def devices_ls(s, id):
    """List the devices container ID may use, and why."""
    show(s, call(s, "ct.device.ls", {"id": id}), ["type", "major", "minor", "mode", "path", "source"])


@devices.command("add")
@click.argument("id")
@click.argument("type", type=click.Choice(["char", "block"]))
@click.argument("major")
@click.argument("minor")
@click.argument("mode")
@click.argument("path", required=False)
@_restart_options
@pass_settings
def devices_add(s, id, type, major, minor, mode, path, no_restart, timeout):
    """Grant device TYPE MAJOR:MINOR with MODE (of r, w, m; '*' for any major
    or minor) to container ID; with PATH (under /dev) its node appears there."""
    show(s, call(s, "ct.device.add", {"id": id, "type": type, "major": major, "minor": minor,
                                       "mode": mode, "path": path, "restart": not no_restart,
                                       "timeout": timeout}))


@devices.command("del")
@click.argument("id")
@click.argument("type", type=click.Choice(["char", "block"]))
@click.argument("major")
@click.argument("minor")
@_restart_options
@pass_settings
def devices_del(s, id, type, major, minor, no_restart, timeout):
    """Take back container ID's own grant of device TYPE MAJOR:MINOR."""
    show(s, call(s, "ct.device.del", {"id": id, "type": type, "major": major, "minor": minor,
                                       "restart": not no_restart, "timeout": timeout}))


def _set_limit(name: str, doc: str):
    @click.argument("id")
    @click.argument("value")
    @pass_settings
    def cmd(s, id, value):
        args = {"disk": value} if name == "disk" else {"limits": {wire_name(name): value}}
        show(s, call(s, "ct.set", {"id": id, **args}))

    cmd.__doc__ = doc + " VALUE none lifts it. Live on a running container."
    return set_.command(name)(cmd)


_set_limit("cpu-limit", "Limit CPU to VALUE cores (fractions allowed): a quota per period.")
_set_limit("memory", "Limit memory to VALUE (e.g. 512M, 2G).")
_set_limit("swap", "Allow VALUE of swap beyond the memory limit.")
_set_limit("pids", "Limit processes and threads to VALUE.")
_set_limit("disk", "Limit the root filesystem to VALUE (btrfs pools); never below what is used.")


@set_.command("flavor")
@click.argument("id")
@click.argument("flavor")
@pass_settings
def set_flavor(s, id, flavor):
    """Give container ID flavor FLAVOR's limits (cores as cpu-limit, memory,
    swap) and disk (btrfs pools), live on a running container.

    \b
    Example:
      osctl ct set flavor web1 large
    """
    show(s, call(s, "ct.set", {"id": id, "flavor": flavor}))


@ct.command("unset")
@click.argument("id")
@click.argument("names", nargs=-1, required=True,
                type=click.Choice(["cpu-limit", "memory", "swap", "pids", "disk"]))
@pass_settings
def unset(s, id, names):
    """Lift limits of container ID (live where it runs)."""
    limits = {wire_name(n): "none" for n in names if n != "disk"}
    show(s, call(s, "ct.set", {"id": id, "limits": limits or None,
                               "disk": "none" if "disk" in names else None}))


@ct.command("passwd")
@click.argument("id")
@click.argument("user")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="The new password [default: asked for].")
@pass_settings
def passwd(s, id, user, password):
    """Set USER's password inside running container ID."""
    call(s, "ct.passwd", {"id": id, "user": user, "password": password})


@ct.command("ps")
@click.argument("id")
@pass_settings
def ps(s, id):
    """List container ID's processes: PIDs and UIDs on the host and inside.

    \b
    Example:
      osctl ct ps web1
    """
    show(s, call(s, "ct.ps", {"id": id}), ["host_pid", "ct_pid", "host_uid", "ct_uid", "command"])


@ct.command("pid")
@click.argument("pids", nargs=-1, required=True, type=int)
@pass_settings
def pid(s, pids):
    """Name the container or VM each host process PIDS belongs to.

    Exit 1 when one belongs to none.

    \b
    Example:
      osctl ct pid 4242 $(pgrep nginx)
    """
    res = call(s, "ct.pid", {"pids": list(pids)})
    show(s, res, ["pid", "kind", "pool", "id"])
    if any(r["id"] is None for r in res):
        sys.exit(1)


@ct.command("wait")
@click.argument("id")
@click.argument("state", type=click.Choice(["up", "running", "stopped", "starting", "stopping",
                                            "frozen", "soft-deleted"]))
@click.option("--timeout", "-t", type=int, default=60, show_default=True,
              help="Seconds to wait before failing (exit code of 'busy').")
@pass_settings
def wait(s, id, state, timeout):
    """Wait until container ID is in STATE.

    'up' is running with its init done starting (systemd: is-system-running
    no longer 'starting').

    \b
    Example:
      osctl ct wait web1 stopped --timeout 30
    """
    show(s, call(s, "ct.wait", {"id": id, "state": state, "timeout": timeout}), LS_COLUMNS)


@ct.command("log")
@click.argument("id")
@click.option("--lines", "-n", type=int, default=200, show_default=True, help="Lines from the end.")
@pass_settings
def log(s, id, lines):
    """Show LXC's log of container ID.

    Why its last start failed comes first.

    \b
    Example:
      osctl ct log web1 -n 50
    """
    res = call(s, "ct.log", {"id": id, "lines": lines})
    first = [f"last start failed: {res['last_start_error']}"] if res.get("last_start_error") else []
    print_log(s, res, first)


def _top_key(value) -> tuple:
    """Numbers largest first, names in order, unknowns (None) last."""
    if value is None:
        return (2, 0)
    return (0, -value) if isinstance(value, (int, float)) else (1, value)


TOP_COLUMNS = ["pool", "id", "user", "cpu_percent", "memory", "pids", "cpu_seconds", "uptime"]


@ct.command("top")
@click.option("--once", is_flag=True, help="One table, then exit (for scripts: with -j).")
@click.option("--sort", "-s", "sort", default="cpu_percent", show_default=True,
              type=click.Choice(TOP_COLUMNS), help="Column to sort by (numbers: largest first).")
@click.option("--interval", "-i", type=click.IntRange(1, 60), default=2, show_default=True,
              help="Seconds between refreshes; CPU %% is over this time.")
@pass_settings
def top(s, once, sort, interval):
    """Show running containers' CPU %, memory and processes.

    CPU % is of one core; the table refreshes until Ctrl-C.

    \b
    Examples:
      osctl ct top
      osctl ct top --once -j -s memory
    """
    while True:
        rows = call(s, "ct.top", {"interval": interval})
        rows.sort(key=lambda r: _top_key(r[sort]))
        if not once:
            click.clear()
        show(s, rows, TOP_COLUMNS)
        if once:
            return


COMMANDS = [ct]
