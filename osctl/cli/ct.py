"""osctl ct: containers."""

from __future__ import annotations

import os
import re
import sys

import click

from .bulk import act, lifecycle_commands, selection, selection_options
from .common import (Columns, attr_change, attr_commands, call, change, limit_args, listing_commands, passwd_command, pass_settings,
                     print_log, show, size_value, wire_name, with_examples)
from .cluster_settings import instance_settings
from .groups import Group, listing_options


def addresses(version: int):
    """The ``ipv4`` or ``ipv6`` column: every netif's addresses of that
    version, a host route's /32 or /128 left out."""
    host = "/32" if version == 4 else "/128"

    def column(row: dict) -> list[str]:
        return [a.removesuffix(host) for n in row.get("netifs") or () for a in n.get("addresses") or ()
                if (":" in a) == (version == 6)]
    return column


COLUMNS = Columns({
    "pool": "the pool it lives in",
    "id": "its name, unique in the pool",
    "user": "its owner",
    "group": "its resource group",
    "distribution": "the template's distribution",
    "version": "the distribution's version",
    "state": "running, stopped, frozen, ...",
    "init_pid": "its init's PID on the node",
    "ipv4": "IPv4 addresses of its netifs",
    "ipv6": "IPv6 addresses of its netifs",
    "hostname": "its hostname",
    "autostart": "started when osctld starts",
    "cpu_limit": "its own CPU limit, in cores",
    "memory": "its own memory limit",
    "cpu_seconds": "CPU time it used since it started (asks the node: -o)",
    "cpu_percent": "CPU use over the last 10 s, % of one core (asks the node: -o)",
    "memory_used": "memory it uses now (asks the node: -o)",
    "pids": "processes it runs (asks the node: -o)",
    "uptime": "since when its init runs (asks the node: -o)",
    "rx_bytes": "bytes its netifs received since it started (asks the node: -o)",
    "tx_bytes": "bytes its netifs sent since it started (asks the node: -o)",
    "disk_used": "what its rootfs holds, btrfs and zfs pools (asks the node: -o)",
    "disk": "its disk quota (btrfs, zfs pools)",
    "features": "features turned on (tun, fuse, ...)",
    "pending_restart": "changes that wait for its restart (ct restart applies them)",
    "created": "when it was made",
}, ["pool", "id", "user", "distribution", "version", "state", "init_pid", "ipv4", "ipv6",
    "pending_restart"], {
    "ipv4": addresses(4), "ipv6": addresses(6),
    "cpu_limit": lambda r: (r.get("limits") or {}).get("cpu_limit"),
    "memory": lambda r: (r.get("limits") or {}).get("memory"),
})


@click.group("ct", cls=Group, lazy={"netif": "osctl.cli.netif:netif", "cp": "osctl.cli.files:cp",
                                   "mount": "osctl.cli.mounts:mount", "send": "osctl.cli.ct_send:send",
                                   "replicate": "osctl.cli.ct_send:replicate",
                                   "recover": "osctl.cli.ct_send:recover",
                                   "snapshot": "osctl.cli.snapshots:snapshot",
                                   "dataset": "osctl.cli.datasets:dataset"},
             summaries={"netif": "Network interfaces of containers: routed (default) or bridged veths.",
                        "cp": "Copy a file (or with -r a directory) into or out of a running container.",
                        "mount": "Bind mounts of the node's directories (or files) in containers.",
                        "send": "Move a container to another node, at once or stage by stage.",
                        "replicate": "One pass of a container's replica on another node (HA).",
                        "recover": "Start a container from its replica here (its node is gone).",
                        "snapshot": "Snapshots of containers' root filesystems (btrfs, zfs pools).",
                        "dataset": "Containers' own datasets, mounted inside (zfs pools)."})
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
@click.option("--start", "start_after", is_flag=True,
              help="Start it once created (with --node: on that node).")
@click.option("--group", "-g", default="/default", show_default=True, help="Resource group.")
@click.option("--cpu-limit", metavar="CORES", help="CPU limit in cores, e.g. 0.5.")
@click.option("--memory", metavar="SIZE", help="Memory limit, e.g. 512M.")
@click.option("--swap", metavar="SIZE", help="Swap beyond memory.")
@click.option("--pids", metavar="N", help="Process limit.")
@click.option("--disk", metavar="SIZE", help="Disk quota (btrfs, zfs pools).")
@click.option("--flavor", "-f", help="Flavor: its cores as cpu-limit, memory, swap, disk "
                                     "(osctl flavor ls); the options above override it.")
@click.option("--node", "-n", "node", metavar="NAME|auto",
              help="In a cluster: create it on that node, or (auto) where the leader places it.")
@click.option("--server-group", metavar="NAME",
              help="In a cluster: its server group (osctl server-group ls); implies --node auto.")
@pass_settings
def new(s, id, user, template, version, pool, hostname, dns_resolvers, autostart, start_after,
        group, cpu_limit, memory, swap, pids, disk, flavor, node, server_group):
    """Create container ID owned by USER from a template.

    The template's rootfs is built once per pool (the debian template takes
    minutes the first time) and each container is a snapshot or copy of it.
    Progress goes to stderr; Ctrl-C cancels and rolls back.

    In a cluster, --node auto has the leader place it by free capacity and
    its server group's policy, and that node create it (its user must be
    there) and, with --start, start it; the reply names the node.

    \b
    Examples:
      osctl ct new web1 -u alice
      osctl ct new db1 -u alice -t debian --memory 2G --start
      osctl ct new web2 -u alice --flavor small --node auto --server-group web --start
    """
    res = call(s, "ct.new", {"id": id, "user": user, "template": template, "version": version,
                             "pool": pool, "hostname": hostname,
                             "dns_resolvers": list(dns_resolvers) or None, "autostart": autostart,
                             "group": group, "disk": disk, "flavor": flavor, "node": node,
                             "server_group": server_group, "start": start_after,
                             "limits": limit_args(cpu_limit=cpu_limit, memory=memory, swap=swap,
                                                  pids=pids)})
    show(s, res)


# Columns of ct ls that cost a read of the container's cgroup: asked for only with -o or -s.
USAGE_COLUMNS = ["cpu_seconds", "cpu_percent", "memory_used", "pids", "uptime", "rx_bytes",
                 "tx_bytes", "disk_used"]
listing_commands(ct, "ct", "containers", COLUMNS, "Show one container.",
                 ["osctl ct show web1", "osctl ct show web1 -o state,init_pid"],
                 ["osctl ct ls -o id,state,ipv4 -s id", "osctl ct ls -u alice -S running -j",
                  "osctl ct ls -o id,cpu_percent,memory_used,pids,uptime -s cpu_percent"],
                 USAGE_COLUMNS)

_timeout = click.option("--timeout", "-t", type=int, default=60, show_default=True,
                        help="Seconds to wait for a clean shutdown before killing.")
lifecycle_commands(ct, "ct", "container", {
    "start": ("Start containers (one already running: a note, exit 0); --wait returns once "
              "the system inside is up.",
              ["osctl ct start web1 --wait && osctl ct exec web1 -- uptime", "osctl ct start -u alice"]),
    "stop": ("Stop containers cleanly; kill them after --timeout.",
             ["osctl ct stop web1 -t 30", "osctl ct stop --all -p tank"]),
    "restart": ("Stop containers, then start them: staged changes (pending_restart) apply; one "
                "that cannot start so runs again as before, and the error says so.",
                ["osctl ct restart web1", "osctl ct restart -g /prod/web"]),
    "kill": ("Stop containers at once, without a clean shutdown.", ["osctl ct kill web1 web2"]),
    "del": ("Delete containers and their data, at once or staged (--at).",
            ["osctl ct del web1", "osctl ct del -f -u alice", "osctl ct del web1 --at 2026-12-24",
             "osctl ct del web1 --cancel"]),
}, _timeout, "Stop a running one first, and delete its snapshots too.", start_options=[
    click.option("--wait", "-w", is_flag=True, default=None,
                 help="Return once the system inside is up (systemd: is-system-running "
                      "no longer 'starting')."),
    click.option("--timeout", "-t", type=int,
                 help="With --wait: seconds to wait before failing [default: 120]."),
])


@ct.command("reinstall")
@click.argument("id")
@click.option("--template", "-t", help="Template [default: the one it was made from].")
@click.option("--version", "-v", "version", help="Version [default: its own, or the template's].")
@click.option("--restart", is_flag=True, help="A running container: stop it, reinstall, start it.")
@click.option("--timeout", type=int, default=60, show_default=True,
              help="With --restart: seconds to wait for a clean stop before killing.")
@pass_settings
def reinstall(s, id, template, version, restart, timeout):
    """Give container ID a fresh root filesystem from its template (a
    tenant's "reinstall my server"): everything in the old one is gone;
    its id, config, addresses, features and limits stay. A running one is
    refused unless --restart. The old rootfs is kept until the new one is
    in place (and started): a failure puts it back.

    \b
    Examples:
      osctl ct reinstall web1
      osctl ct reinstall web1 -t debian --restart
    """
    change(s, "ct.reinstall", {"id": id, "template": template, "version": version,
                               "restart": restart or None, "timeout": timeout}, "ct.show", id)


@ct.command("rename")
@click.argument("id")
@click.argument("new_id", metavar="NEW")
@pass_settings
def rename(s, id, new_id):
    """Rename stopped container ID to NEW: its config, rootfs, LXC log and
    planned maintenances move; osctl history NEW shows its past too.

    \b
    Example:
      osctl ct rename web1 shop1
    """
    res = call(s, "ct.rename", {"id": id, "new_id": new_id})
    if s.format != "table":
        show(s, res)
    elif not s.quiet:
        click.echo(f"{id}: renamed to {res['id']}")


@ct.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("id")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--env", "-e", multiple=True, metavar="K=V", help="Environment variable.")
@pass_settings
def exec_(s, id, argv, env):
    """Run a command in container ID: osctl ct exec ID -- CMD ARGS...

    The command runs on osctl's own stdin, stdout and stderr, and osctl
    exits with its exit code.

    \b
    Examples:
      osctl ct exec web1 -- cat /etc/os-release
      osctl ct exec web1 -e LANG=C -- sh -c 'df -h /'
    """
    env_map = dict(e.split("=", 1) for e in env if "=" in e)
    res = call(s, "ct.exec", {"id": id, "argv": list(argv), "env": env_map or None}, fds=(0, 1, 2))
    sys.exit(res["exit_code"])


@ct.command("runscript", context_settings={"ignore_unknown_options": True})
@click.argument("id")
@click.argument("file", type=click.File("rb"))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@pass_settings
def runscript(s, id, file, args):
    """Run script FILE of the node inside running container ID.

    The script need not be in the container: it is passed in, run as root
    inside (its #! line picks the interpreter; sh runs one without), on
    osctl's stdin, stdout and stderr, and osctl exits with its exit code.
    Nothing of it stays inside. ARGS are the script's.

    \b
    Examples:
      osctl ct runscript web1 ./setup.sh
      osctl ct runscript web1 ./adduser.sh alice --admin
    """
    res = call(s, "ct.runscript", {"id": id, "script": file.read(), "args": list(args) or None},
               fds=(0, 1, 2))
    sys.exit(res["exit_code"])


@ct.command("attach")
@click.argument("id")
@pass_settings
def attach(s, id):
    """Open a shell in container ID on this terminal.

    \b
    Example:
      osctl ct attach web1
    """
    import os

    env = {"TERM": os.environ.get("TERM", "xterm")}
    res = call(s, "ct.attach", {"id": id, "env": env}, fds=(0, 1, 2))
    sys.exit(res["exit_code"])


@ct.command("console")
@click.argument("id")
@click.option("--tty", type=int, default=0, show_default=True, help="0 is /dev/console.")
@pass_settings
def console(s, id, tty):
    """Attach to the console of container ID (Ctrl-a q to leave).

    \b
    Examples:
      osctl ct console web1
      osctl ct console web1 --tty 1
    """
    res = call(s, "ct.console", {"id": id, "tty": tty}, fds=(0, 1, 2))
    sys.exit(res["exit_code"])


@ct.group("set")
def set_():
    """Change a container's settings."""


def set_ct(s, id: str, **changes) -> None:
    """``ct.set`` of container ID, printing what changed."""
    change(s, "ct.set", {"id": id, **changes}, "ct.show", id)


@set_.command("hostname")
@click.argument("id")
@click.argument("hostname")
@pass_settings
def set_hostname(s, id, hostname):
    """Set the hostname (live on a running container).

    \b
    Example:
      osctl ct set hostname web1 web1.example.org
    """
    set_ct(s, id, hostname=hostname)


@set_.command("dns-resolvers")
@click.argument("id")
@click.argument("resolvers", nargs=-1, required=True)
@pass_settings
def set_dns(s, id, resolvers):
    """Set the DNS resolvers written to /etc/resolv.conf.

    \b
    Example:
      osctl ct set dns-resolvers web1 192.0.2.53 2001:db8::53
    """
    set_ct(s, id, dns_resolvers=list(resolvers))


@set_.command("autostart")
@click.argument("id")
@click.argument("value", type=click.BOOL, metavar="on|off")
@click.option("--priority", type=int, help="Lower starts first [default 10].")
@pass_settings
def set_autostart(s, id, value, priority):
    """Start (or not) when osctld starts: on, off (or yes/no, true/false).

    \b
    Example:
      osctl ct set autostart web1 on --priority 5
    """
    set_ct(s, id, autostart=value, autostart_priority=priority)


@set_.command("group")
@click.argument("id")
@click.argument("group")
@pass_settings
def set_group(s, id, group):
    """Move stopped container ID to resource group GROUP: it starts in that
    group's cgroup, bound by its limits (and those above it); a running
    one is refused, as a VM is (vm set group).

    \b
    Example:
      osctl ct set group web1 /prod
    """
    set_ct(s, id, group=group)


@set_.command("prlimit")
@click.argument("id")
@click.argument("name")
@click.argument("soft")
@click.argument("hard", required=False)
@pass_settings
def set_prlimit(s, id, name, soft, hard):
    """Set prlimit NAME (nofile, nproc, memlock, ...) to SOFT [HARD, default SOFT];
    numbers or 'unlimited'. Running processes get it at once, init at each start.
    SOFT none drops it from the config (the default applies from the next start).

    \b
    Examples:
      osctl ct set prlimit web1 nofile 4096 8192
      osctl ct set prlimit web1 nofile none
    """
    if soft == "none":
        change(s, "ct.prlimit.del", {"id": id, "name": name}, "ct.show", id)
    else:
        change(s, "ct.prlimit.set", {"id": id, "name": name, "soft": soft, "hard": hard}, "ct.show", id)


def _restart_options(cmd):
    cmd = click.option("--restart/--no-restart", default=False, show_default=True, help=(
        "Restart a running container into the change now; without it the change is staged "
        "(pending_restart, applied by ct restart or in its group's maintenance window)."))(cmd)
    return click.option("--timeout", "-t", type=int, default=60, show_default=True,
                        help="Seconds to wait for a clean stop when restarting.")(cmd)


@ct.group("feature")
def feature():
    """Features: tun, fuse, kvm, ppp, lxc (nesting), docker, keyctl."""


@listing_options
@feature.command("ls")
@click.argument("id")
@pass_settings
def feature_ls(s, id):
    """List features and whether container ID has them.

    \b
    Example:
      osctl ct feature ls web1
    """
    show(s, call(s, "ct.feature.ls", {"id": id}), ["name", "enabled", "description", "devices"])


def _feature_switch(verb: str, doc: str):
    @click.argument("words", nargs=-1, required=True, metavar="[ID[,ID]...] NAME...")
    @selection_options("container", ids=False)
    @_restart_options
    @pass_settings
    def cmd(s, words, all_, user, pool, group, restart, timeout):
        names = list(words)
        ids = [] if all_ or user or pool or group else [i for i in names.pop(0).split(",") if i]
        if not names:
            raise click.UsageError("name one or more features (osctl ct feature ls ID)")
        sel = selection(ids, all_, user, pool, group)
        args = {"names": names, "restart": restart, "timeout": timeout}
        if sel.single:
            change(s, f"ct.feature.{verb}", {"id": ids[0], **args}, "ct.show", ids[0])
        else:
            act(s, "ct", f"feature.{verb}", sel, args, describe=_features_done)

    cmd.__doc__ = doc
    return feature.command(verb)(cmd)


def _features_done(res: dict) -> str:
    return "features " + (",".join(res.get("features") or ()) or "-") + \
        ("; restarted" if res.get("restarted") else "; restart pending" if res.get("pending_restart") else "")


_STAGED = """A running container is not restarted: the change waits (pending_restart
    in ct ls and ct show) for ct restart, or its group's maintenance window;
    --restart restarts it now (if it cannot start so, it runs as before)."""
_feature_switch("enable", f"""Turn features NAMES on for containers.

    The first argument names the container, or several: ID,ID,...; with
    --all, -u, -p or -g every argument is a feature. {_STAGED}

    \b
    Examples:
      osctl ct feature enable web1 tun fuse && osctl ct restart web1
      osctl ct feature enable -u alice tun --restart""")
_feature_switch("disable", f"""Turn features NAMES off for containers.

    The first argument names the container, or several: ID,ID,...; with
    --all, -u, -p or -g every argument is a feature. {_STAGED}

    \b
    Examples:
      osctl ct feature disable web1 fuse
      osctl ct feature disable web1,web2 kvm --restart""")


@ct.group("devices")
def devices():
    """Device grants: the devices cgroup and nodes in /dev."""


@listing_options
@devices.command("ls")
@click.argument("id")
@pass_settings
def devices_ls(s, id):
    """List the devices container ID may use, and why.

    \b
    Example:
      osctl ct devices ls web1
    """
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
def devices_add(s, id, type, major, minor, mode, path, restart, timeout):
    """Grant device TYPE MAJOR:MINOR with MODE (of r, w, m; '*' for any major
    or minor) to container ID; with PATH (under /dev) its node appears there.
    A running container gets it at its restart (pending_restart), or now
    with --restart.

    \b
    Examples:
      osctl ct devices add web1 char 10 200 rwm /dev/net/tun
      osctl ct devices add web1 char 10 229 rwm /dev/fuse --restart
    """
    change(s, "ct.device.add", {"id": id, "type": type, "major": major, "minor": minor,
                                 "mode": mode, "path": path, "restart": restart,
                                 "timeout": timeout}, "ct.show", id)


@devices.command("del")
@click.argument("id")
@click.argument("type", type=click.Choice(["char", "block"]))
@click.argument("major")
@click.argument("minor")
@_restart_options
@pass_settings
def devices_del(s, id, type, major, minor, restart, timeout):
    """Take back container ID's own grant of device TYPE MAJOR:MINOR (a
    running container keeps it until its restart, or --restart now).

    \b
    Examples:
      osctl ct devices del web1 char 10 200
      osctl ct devices del web1 char 10 200 --restart
    """
    change(s, "ct.device.del", {"id": id, "type": type, "major": major, "minor": minor,
                                 "restart": restart, "timeout": timeout}, "ct.show", id)


def _set_limit(name: str, doc: str, example: str, size: bool = False):
    @click.argument("id")
    @click.argument("value")
    @pass_settings
    def cmd(s, id, value):
        if size:  # +SIZE grows what is set
            value = size_value(s, "ct.show", {"id": id}, value,
                               lambda ct: ct["disk"] if name == "disk" else ct["limits"].get(name))
        args = {"disk": value} if name == "disk" else {"limits": {wire_name(name): value}}
        set_ct(s, id, **args)

    grow = " +VALUE adds to what is set." if size else ""
    cmd.__doc__ = with_examples(f"{doc} VALUE none lifts it.{grow} Live on a running container.", example)
    return set_.command(name)(cmd)


_set_limit("cpu-limit", "Limit CPU to VALUE cores (fractions allowed): a quota per period.",
           "osctl ct set cpu-limit web1 1.5")
_set_limit("memory", "Limit memory to VALUE (e.g. 512M, 2G).", "osctl ct set memory web1 +512M",
           size=True)
_set_limit("swap", "Allow VALUE of swap beyond the memory limit.", "osctl ct set swap web1 1G",
           size=True)
_set_limit("pids", "Limit processes and threads to VALUE.", "osctl ct set pids web1 2000")
_set_limit("disk", "Limit the root filesystem to VALUE (btrfs, zfs pools); never below what is used.",
           "osctl ct set disk web1 +10G", size=True)


@set_.command("flavor")
@click.argument("id")
@click.argument("flavor")
@pass_settings
def set_flavor(s, id, flavor):
    """Give container ID flavor FLAVOR's limits (cores as cpu-limit, memory,
    swap) and disk (btrfs, zfs pools), live on a running container.

    \b
    Example:
      osctl ct set flavor web1 large
    """
    show(s, call(s, "ct.set", {"id": id, "flavor": flavor}))


LIFTABLE = ["cpu-limit", "memory", "swap", "pids", "disk"]


@ct.command("unset")
@click.argument("id")
@click.argument("names", nargs=-1, required=True, metavar="{" + "|".join(LIFTABLE) + "}...")
@pass_settings
def unset(s, id, names):
    """Lift limits of container ID (live where it runs); or remove an
    attribute: osctl ct unset attr ID KEY.

    \b
    Examples:
      osctl ct unset web1 swap pids
      osctl ct unset attr web1 org.example:order
    """
    if id == "attr" and len(names) == 2 and ":" in names[1]:  # a limit's name has no colon
        attr_change(s, "ct", "unset", {"id": names[0]}, names[1])
        return
    bad = [n for n in names if n not in LIFTABLE]
    if bad:
        raise click.BadParameter(f"{bad[0]!r} is not one of {', '.join(LIFTABLE)}", param_hint="NAMES")
    limits = {wire_name(n): "none" for n in names if n != "disk"}
    set_ct(s, id, limits=limits or None, disk="none" if "disk" in names else None)


passwd_command(ct, "ct", with_examples("Set USER's password inside running container ID.",
                                        "osctl ct passwd web1 root"))


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
    show(s, call(s, "ct.wait", {"id": id, "state": state, "timeout": timeout}), COLUMNS)


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


attr_commands(ct, "ct", "container")

# --- archives, copies, ownership ----------------------------------------------------------


@ct.command("export")
@click.argument("id")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--compression", "-c", type=click.Choice(["zstd", "gzip", "none"]), default="zstd",
              show_default=True, help="How the file is compressed.")
@click.option("--live", is_flag=True,
              help="Pools without snapshots (dir): copy a running container as it runs; files "
                   "it writes meanwhile may be copied half written. Without it a running "
                   "container there is refused: stop it first.")
@pass_settings
def export(s, id, file, compression, live):
    """Write container ID, its config and its files, to FILE (a new file, or
    - for stdout): one tar, for ct import on this node or another.

    A running container on a btrfs pool is read from a snapshot taken at
    once (it goes on running; the snapshot is removed afterwards). Progress
    goes to stderr; Ctrl-C cancels and removes FILE.

    \b
    Examples:
      osctl ct export web1 /backup/web1.tar.zst
      osctl ct export web1 - -c gzip | ssh other 'cat > web1.tar.gz'
      osctl ct export web1 web1.tar -c none --live
    """
    if file == "-":
        if sys.stdout.isatty():
            raise click.UsageError("will not write an archive to a terminal: give a file")
        show(s, call(s, "ct.export", {"id": id, "compression": compression, "live": live or None},
                     fds=(1,)))
        return
    try:
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise click.UsageError(f"{file} exists: remove it or give another name") from None
    try:
        res = call(s, "ct.export", {"id": id, "compression": compression, "live": live or None},
                   fds=(fd,))
    except BaseException:  # an error or Ctrl-C: no half-written archive is left
        os.unlink(file)
        raise
    finally:
        os.close(fd)
    show(s, res)


@ct.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--as-id", help="Its id here [default: the exported container's].")
@click.option("--user", "-u", help="Owner here [default: the exported one's user, made if the "
                                   "pool has none of that name].")
@click.option("--pool", "-p", help="Pool [default: the default pool].")
@pass_settings
def import_(s, file, as_id, user, pool):
    """Make a container from FILE, written by ct export (here or on another
    node). It is stopped; its addresses must be free on this node.

    Everything is checked before anything is made (format, id, user,
    addresses); a failure or Ctrl-C leaves nothing. Its group, if this pool
    has none of that name, becomes /default; a disk quota, where the pool
    has none, is dropped (the notes say so).

    \b
    Examples:
      osctl ct import /backup/web1.tar.zst
      osctl ct import web1.tar.zst --as-id web2 --user bob --pool fast
    """
    with open(file, "rb") as f:
        show(s, call(s, "ct.import", {"as_id": as_id, "user": user, "pool": pool},
                     fds=(f.fileno(),)))


def _vz_id(source: str) -> str | None:
    """The OpenVZ CTID a source's name gives: vzdump-openvz-101-....tar.gz, /vz/private/101."""
    name = os.path.basename(os.path.normpath(source))
    m = re.match(r"^vzdump-openvz-(\d+)-", name)
    return m.group(1) if m else name if name.isdigit() else None


@ct.command("import-vz")
@click.argument("source", type=click.Path(exists=True))
@click.option("--conf", type=click.File("r"),
              help="The container's vzctl config (/etc/vz/conf/CTID.conf) [default: an archive's "
                   "./etc/vzdump/vps.conf]; needed for a private area.")
@click.option("--user", "-u", required=True, help="Owner of the new container.")
@click.option("--pool", "-p", help="Pool [default: the user's].")
@click.option("--as-id", help="Its id here [default: the OpenVZ CTID in SOURCE's name].")
@click.option("--netif-name", default="eth0", show_default=True,
              help="Name of the routed netif that takes IP_ADDRESS.")
@click.option("--dry-run", is_flag=True, help="Print the report and the rootfs fix-ups; make nothing.")
@pass_settings
def import_vz(s, source, conf, user, pool, as_id, netif_name, dry_run):
    """Make a container from an OpenVZ Legacy one: SOURCE is a vzdump archive
    (.tar, .tar.gz, .tar.lzo with lzop installed) or a simfs private area
    copied by hand (a ploop one is refused: copy from VE_ROOT after 'vzctl
    mount'). Its config is mapped key by key (the report says what each
    became, or why it was dropped), and what vzctl left in the rootfs that
    breaks under LXC is fixed (venet0 configuration, vzquota, console and
    power lines, pam_loginuid). It is made stopped; its addresses must be
    free here. A failure leaves nothing.

    \b
    Examples:
      osctl ct import-vz vzdump-openvz-101-2016_01_02-03_04_05.tar.gz -u alice
      osctl ct import-vz /srv/vz/private/101 --conf 101.conf -u alice --dry-run
      osctl ct import-vz ct.tar --as-id web1 -u alice -j
    """
    ct_id = as_id or _vz_id(source)
    if not ct_id:
        raise click.UsageError(f"no CTID in the name {source}: give --as-id")
    fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        res = call(s, "ct.import.vz", {"id": ct_id, "user": user, "pool": pool,
                                       "conf": conf.read() if conf else None,
                                       "netif_name": netif_name, "dry_run": dry_run or None},
                   fds=(fd,))
    finally:
        os.close(fd)
    if s.format != "table":
        show(s, res)
        return
    show(s, res["report"], ["status", "key", "value", "detail"])
    click.echo()
    show(s, res["fixups"], ["action", "path", "why"])
    for note in res["notes"]:
        click.echo(f"note: {note}")
    click.echo(f"dry run: container {ct_id} not made" if res["dry_run"]
               else f"container {ct_id} made in pool {res['pool']}, stopped")


@ct.command("copy")
@click.argument("id")
@click.argument("new_id", metavar="NEW")
@click.option("--to-pool", "pool", help="Pool of the copy [default: ID's]; the user is made "
                                        "there if missing.")
@click.option("--live", is_flag=True,
              help="Pools without snapshots (dir): copy a running container as it runs (see "
                   "ct export --help).")
@pass_settings
def copy(s, id, new_id, pool, live):
    """Copy container ID as NEW: same files, settings and user, stopped.

    Its netifs are copied without addresses and routed prefixes (those
    stay ID's) and with new MACs and interconnects. Within a btrfs pool the
    copy is a snapshot: instant, and it takes no space until either writes.

    \b
    Examples:
      osctl ct copy web1 web1-test
      osctl ct copy web1 web1 --to-pool fast
    """
    show(s, call(s, "ct.copy", {"id": id, "new_id": new_id, "pool": pool, "live": live or None}))


@ct.command("chown")
@click.argument("id")
@click.argument("user")
@pass_settings
def chown(s, id, user):
    """Give stopped container ID to USER, another user of its pool: it runs
    in USER's ID map from its next start, and counts against USER's quotas.

    Files keep the owners they have inside (root stays root). On pools with
    idmapped mounts nothing is rewritten; on chown pools every file is
    shifted into USER's map.

    \b
    Example:
      osctl ct chown web1 bob
    """
    change(s, "ct.chown", {"id": id, "user": user}, "ct.show", id)


instance_settings(set_, "ct")
