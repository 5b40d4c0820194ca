"""osctl ct netif: a container's network interfaces, addresses and routes."""

from __future__ import annotations

import click

from .common import call, pass_settings, show

LS_COLUMNS = ["name", "type", "veth", "interconnect", "addresses", "rx_bytes", "rx_packets",
              "tx_bytes", "tx_packets", "max_tx", "max_rx"]
RATE_HELP = "bits per second: 100M, 1G; 0 removes the limit"


@click.group("netif")
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
    """Add interface NAME (eth0, ...) to container ID; hot-plugged if it runs."""
    show(s, call(s, "netif.new", {"id": id, "name": name, "type": type_, "link": link,
                                  "hwaddr": hwaddr, "gateway4": gateway4, "gateway6": gateway6,
                                  "dhcp": dhcp, "max_tx": max_tx, "max_rx": max_rx}))


@netif.command("del")
@click.argument("id")
@click.argument("name")
@pass_settings
def delete(s, id, name):
    """Remove interface NAME of container ID; unplugged if it runs."""
    show(s, call(s, "netif.del", {"id": id, "name": name}))


@netif.command("ls")
@click.argument("id")
@pass_settings
def ls(s, id):
    """Interfaces of container ID, with traffic counters (as the container sees them)."""
    show(s, call(s, "netif.ls", {"id": id}), LS_COLUMNS)


@netif.command("rename")
@click.argument("id")
@click.argument("name")
@click.argument("new_name")
@pass_settings
def rename(s, id, name, new_name):
    """Rename interface NAME of container ID to NEW_NAME."""
    show(s, call(s, "netif.rename", {"id": id, "name": name, "new_name": new_name}))


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
    """Change shaping, gateways or DHCP of interface NAME; live if it runs."""
    show(s, call(s, "netif.set", {"id": id, "name": name, "max_tx": max_tx, "max_rx": max_rx,
                                  "gateway4": gateway4, "gateway6": gateway6, "dhcp": dhcp}))


@netif.group("ip")
def ip():
    """Addresses of an interface."""


@ip.command("add")
@click.argument("id")
@click.argument("name")
@click.argument("address", metavar="ADDR[/PREFIX]")
@pass_settings
def ip_add(s, id, name, address):
    """Give ADDR to interface NAME (bridged: with its /PREFIX); live if it runs."""
    show(s, call(s, "netif.ip_add", {"id": id, "name": name, "address": address}))


@ip.command("del")
@click.argument("id")
@click.argument("name")
@click.argument("address", metavar="ADDR")
@pass_settings
def ip_del(s, id, name, address):
    """Take ADDR from interface NAME; live if it runs."""
    show(s, call(s, "netif.ip_del", {"id": id, "name": name, "address": address}))


@ip.command("ls")
@click.argument("id")
@click.argument("name", required=False)
@pass_settings
def ip_ls(s, id, name):
    """Addresses of container ID's interfaces (or of NAME)."""
    show(s, call(s, "netif.ip_ls", {"id": id, "name": name}), ["netif", "address", "version"])


@netif.group("route")
def route():
    """Prefixes routed to an interface but not assigned on it."""


@route.command("add")
@click.argument("id")
@click.argument("name")
@click.argument("prefix")
@click.option("--via", metavar="ADDR", help="Next hop [routed: the container's own address].")
@pass_settings
def route_add(s, id, name, prefix, via):
    """Route PREFIX to interface NAME; live if it runs."""
    show(s, call(s, "netif.route_add", {"id": id, "name": name, "prefix": prefix, "via": via}))


@route.command("del")
@click.argument("id")
@click.argument("name")
@click.argument("prefix")
@pass_settings
def route_del(s, id, name, prefix):
    """Stop routing PREFIX to interface NAME."""
    show(s, call(s, "netif.route_del", {"id": id, "name": name, "prefix": prefix}))


@route.command("ls")
@click.argument("id")
@click.argument("name", required=False)
@pass_settings
def route_ls(s, id, name):
    """Routed prefixes of container ID's interfaces (or of NAME)."""
    show(s, call(s, "netif.route_ls", {"id": id, "name": name}), ["netif", "prefix", "via"])


# Registered under `osctl ct` (see main.py): a netif belongs to a container.
COMMANDS = [netif]
