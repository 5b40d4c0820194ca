"""osctl ct netif and osctl vm netif: network interfaces, addresses and routes.

One set of commands serves both: under ``osctl vm`` the group marks the
context, and every request then goes to the ``vm.netif.*`` verb instead of
``ct.netif.*``."""

from __future__ import annotations

import click

from .common import call, change, pass_settings, show, with_examples
from .groups import Group, listing_options

LS_COLUMNS = ["name", "type", "veth", "interconnect", "addresses", "rx_bytes", "rx_packets",
              "tx_bytes", "tx_packets", "max_tx", "max_rx"]
RATE_HELP = "bits per second: 100M, 1G; 0 removes the limit"
VM_SCOPE = "osctl.netif.vm"


def _kind() -> str:
    """``vm`` under ``osctl vm netif``, else ``ct``."""
    return "vm" if click.get_current_context().meta.get(VM_SCOPE) else "ct"


def _call(s, verb: str, args: dict):
    """The request ``netif.<verb>`` for a container's netif, or for a VM's."""
    return call(s, f"{_kind()}.netif.{verb}", args)


def _apply(s, verb: str, args: dict) -> None:
    """A state-changing ``netif.<verb>``, printing what it changed of the
    container or VM."""
    kind = _kind()
    change(s, f"{kind}.netif.{verb}", args, f"{kind}.show", args["id"])


@click.group("netif", cls=Group)
def netif():
    """Network interfaces of containers: routed (default) or bridged veths."""


@netif.command("new")
@click.argument("id")
@click.argument("name")
@click.option("--type", "type_", type=click.Choice(["routed", "bridge"]), default="routed",
              show_default=True, help="Routed through the node, or joined to a bridge.")
@click.option("--link", metavar="BRIDGE", help="The bridge of a bridged interface.")
@click.option("--hwaddr", metavar="MAC", help="MAC inside [default: a random fixed one].")
@click.option("--gateway4", metavar="IP|auto|none", default="auto", show_default=True,
              help="Bridged: IPv4 gateway; auto is the bridge's first address.")
@click.option("--gateway6", metavar="IP|auto|none", default="auto", show_default=True,
              help="Bridged: IPv6 gateway.")
@click.option("--dhcp", is_flag=True, help="Bridged: addresses from DHCP.")
@click.option("--max-tx", metavar="RATE", help=f"Limit what the container sends ({RATE_HELP}).")
@click.option("--max-rx", metavar="RATE", help=f"Limit what the container receives ({RATE_HELP}).")
@pass_settings
def new(s, id, name, type_, link, hwaddr, gateway4, gateway6, dhcp, max_tx, max_rx):
    """Add interface NAME (eth0, ...) to container ID; hot-plugged if it runs.

    \b
    Examples:
      osctl ct netif new web1 eth0
      osctl ct netif new web1 eth1 --type bridge --link br0 --dhcp
    """
    _apply(s, "new", {"id": id, "name": name, "type": type_, "link": link,
                      "hwaddr": hwaddr, "gateway4": gateway4, "gateway6": gateway6,
                      "dhcp": dhcp, "max_tx": max_tx, "max_rx": max_rx})


@netif.command("del")
@click.argument("id")
@click.argument("name")
@pass_settings
def delete(s, id, name):
    """Remove interface NAME of container ID; unplugged if it runs.

    \b
    Example:
      osctl ct netif del web1 eth1
    """
    _apply(s, "del", {"id": id, "name": name})


@listing_options
@netif.command("ls")
@click.argument("id")
@pass_settings
def ls(s, id):
    """Interfaces of container ID, with traffic counters (as the container sees them).

    \b
    Examples:
      osctl ct netif ls web1
      osctl vm netif ls v1 -o name,addresses
    """
    show(s, _call(s, "ls", {"id": id}), LS_COLUMNS)


@netif.command("rename")
@click.argument("id")
@click.argument("name")
@click.argument("new_name")
@pass_settings
def rename(s, id, name, new_name):
    """Rename interface NAME of container ID to NEW_NAME.

    \b
    Example:
      osctl ct netif rename web1 eth1 lan0
    """
    _apply(s, "rename", {"id": id, "name": name, "new_name": new_name})


@netif.command("set")
@click.argument("id")
@click.argument("name")
@click.option("--max-tx", metavar="RATE", help=f"Limit what the container sends ({RATE_HELP}).")
@click.option("--max-rx", metavar="RATE", help=f"Limit what the container receives ({RATE_HELP}).")
@click.option("--gateway4", metavar="IP|auto|none", help="Bridged: IPv4 gateway.")
@click.option("--gateway6", metavar="IP|auto|none", help="Bridged: IPv6 gateway.")
@click.option("--dhcp/--no-dhcp", default=None, help="Bridged: addresses from DHCP or static.")
@pass_settings
def set_(s, id, name, max_tx, max_rx, gateway4, gateway6, dhcp):
    """Change shaping, gateways or DHCP of interface NAME; live if it runs.

    \b
    Example:
      osctl ct netif set web1 eth0 --max-tx 100M --max-rx 1G
    """
    _apply(s, "set", {"id": id, "name": name, "max_tx": max_tx, "max_rx": max_rx,
                      "gateway4": gateway4, "gateway6": gateway6, "dhcp": dhcp})


@netif.group("ip")
def ip():
    """Addresses of an interface."""


@netif.group("route")
def route():
    """Prefixes routed to an interface but not assigned on it."""


def _change(group, verb: str, arg: str, metavar: str, doc: str, example: str, *options):
    """``osctl ct netif GROUP VERB ID NAME ARG``: one address or prefix."""

    @click.argument("id")
    @click.argument("name")
    @click.argument(arg, metavar=metavar)
    @pass_settings
    def cmd(s, id, name, **kw):
        _apply(s, f"{group.name}.{verb}", {"id": id, "name": name, **kw})

    cmd.__doc__ = with_examples(doc, example)
    for option in options:
        cmd = option(cmd)
    group.command(verb)(cmd)


def _list(group, columns: list[str], doc: str, example: str):
    """``osctl ct netif GROUP ls ID [NAME]``."""

    @click.argument("id")
    @click.argument("name", required=False)
    @pass_settings
    def cmd(s, id, name):
        show(s, _call(s, f"{group.name}.ls", {"id": id, "name": name}), columns)

    cmd.__doc__ = with_examples(doc, example)
    listing_options(group.command("ls")(cmd))


_change(ip, "add", "address", "ADDR[/PREFIX]",
        "Give ADDR to interface NAME of container ID (bridged: with its /PREFIX); live if it runs.",
        "osctl ct netif ip add web1 eth0 192.0.2.10")
_change(ip, "del", "address", "ADDR", "Take ADDR from interface NAME of container ID; live if it runs.",
        "osctl ct netif ip del web1 eth0 192.0.2.10")
_list(ip, ["netif", "address", "version"], "Addresses of container ID's interfaces (or of NAME).",
      "osctl ct netif ip ls web1 eth0")
_change(route, "add", "prefix", "PREFIX", "Route PREFIX to interface NAME of container ID; live if it runs.",
        "osctl ct netif route add web1 eth0 198.51.100.0/28",
        click.option("--via", metavar="ADDR", help="Next hop [routed: the container's own address]."))
_change(route, "del", "prefix", "PREFIX", "Stop routing PREFIX to interface NAME of container ID.",
        "osctl ct netif route del web1 eth0 198.51.100.0/28")
_list(route, ["netif", "prefix", "via"], "Routed prefixes of container ID's interfaces (or of NAME).",
      "osctl ct netif route ls web1")


@click.pass_context
def _vm_scope(ctx) -> None:
    ctx.meta[VM_SCOPE] = True


vm_netif = Group("netif", commands=netif.commands, callback=_vm_scope,
                       help="Network interfaces of VMs (ID is a VM): routed only, a tap "
                            "on the node each; changes to a running VM apply at its next start.")

# `osctl ct netif` and `osctl vm netif` (ct.py and vm.py add them): a netif belongs to either.
