"""osctl cluster and osctl server-group: the nodes of a cluster on etcd,
its instances, and the server groups that keep instances together or apart."""

from __future__ import annotations

import click

from ..units import KINDS, SIZE
from .common import Columns, call, pass_settings, show
from .groups import Group

KINDS.update(dict.fromkeys(("memory_used", "memory_free", "disk_used", "disk_free"), SIZE))

NODE_COLUMNS = Columns({
    "name": "the node's name in the cluster",
    "address": "where the other nodes reach it",
    "state": "online, maintenance, offline (its lease expired) or fenced",
    "leader": "whether it is the cluster's leader (places, evacuates, recovers)",
    "instances": "containers and VMs it holds",
    "cpus": "cPUs its instances are sized to / its CPUs",
    "memory_used": "memory its instances are sized to",
    "memory_free": "its memory less that",
    "disk_used": "disk its instances are sized to",
    "disk_free": "its pools' space less that",
}, ["name", "address", "state", "leader", "instances", "cpus", "memory_used", "memory_free",
    "disk_used", "disk_free"], {
    "cpus": lambda r: f"{r['used']['cpus']}/{r['capacity']['cpus']}",
    "memory_used": lambda r: r["used"]["memory"], "memory_free": lambda r: r["free"]["memory"],
    "disk_used": lambda r: r["used"]["disk"], "disk_free": lambda r: r["free"]["disk"],
})
INSTANCE_COLUMNS = Columns({
    "kind": "ct or vm", "id": "Its id.", "node": "The node it lives on.",
    "server_group": "its server group", "ha": "Replicated and restarted elsewhere if its node dies.",
    "standby": "the node its replica is on",
    "replica_at": "when its last replica was taken (HA)",
    "claimed_at": "when a node last took it over outside a move (recovered, or claimed back after fencing)",
    "evacuate": "what node maintenance does with it: migrate, live-migrate or stop",
    "evacuated_from": "the node maintenance took it from (it goes back there)",
    "cpus": "CPUs it is sized to.",
    "memory": "memory it is sized to", "disk": "Disk it is sized to.",
}, ["kind", "id", "node", "server_group", "ha", "standby", "cpus", "memory", "disk"], {
    "cpus": lambda r: r["size"]["cpus"], "memory": lambda r: r["size"]["memory"],
    "disk": lambda r: r["size"]["disk"],
})


@click.group("cluster", cls=Group)
def cluster():
    """The cluster on etcd this node is a member of: its nodes and instances.

    Any member answers. A command about a container or VM of another node
    is refused with that node's name: run it there.

    \b
    Examples:
      osctl cluster node ls
      osctl cluster ls
      osctl ct new web1 -u alice --node auto --server-group web
    """


@cluster.group("node", cls=Group)
def node():
    """The cluster's nodes."""


@node.command("ls")
@pass_settings
def node_ls(s):
    """List the nodes: state, capacity used and free, instances, the leader.

    Used is what the nodes' instances are sized to (a container's CPU and
    memory limits and disk quota, a VM's cores, memory and disk).

    \b
    Examples:
      osctl cluster node ls
      osctl -j cluster node ls
    """
    show(s, call(s, "cluster.node.ls"), NODE_COLUMNS)


@cluster.command("ls")
@pass_settings
def ls(s):
    """List every container and VM of the cluster and the node it lives on.

    \b
    Examples:
      osctl cluster ls
      osctl cluster ls -o id,node
    """
    show(s, call(s, "cluster.ls"), INSTANCE_COLUMNS)


@click.group("server-group", cls=Group)
def server_group():
    """Server groups: instances kept on one node or on different nodes.

    A hard policy (affinity, anti-affinity) refuses a creation it cannot
    meet; a soft one (soft-affinity, soft-anti-affinity) places as well as
    it can and says so.

    \b
    Examples:
      osctl server-group new web --policy anti-affinity
      osctl ct new web1 -u alice --node auto --server-group web
    """


@server_group.command("new")
@click.argument("name")
@click.option("--policy", required=True,
              type=click.Choice(["affinity", "anti-affinity", "soft-affinity",
                                 "soft-anti-affinity"]),
              help="Together (affinity) or apart (anti-affinity); soft-: a preference.")
@pass_settings
def group_new(s, name, policy):
    """Create server group NAME.

    \b
    Example:
      osctl server-group new db --policy soft-anti-affinity
    """
    show(s, call(s, "servergroup.new", {"name": name, "policy": policy}))


@server_group.command("ls")
@pass_settings
def group_ls(s):
    """List server groups and their members.

    \b
    Example:
      osctl server-group ls
    """
    show(s, call(s, "servergroup.ls"), ["name", "policy", "members"])


@server_group.command("del")
@click.argument("name")
@pass_settings
def group_del(s, name):
    """Delete server group NAME (it must have no members).

    \b
    Example:
      osctl server-group del db
    """
    show(s, call(s, "servergroup.del", {"name": name}))


@node.group("maintenance", cls=Group)
def maintenance():
    """Empty a node for maintenance, and fill it again."""


def _maintenance(s, name: str, enable: bool) -> None:
    res = call(s, "cluster.node.maintenance", {"node": name, "enable": enable})
    if s.format != "table":
        show(s, res)
        return
    for line in res["not_done"]:
        click.echo(f"not done: {line}")
    click.echo(f"node {res['node']} is {res['state']}: {len(res['done'])} done, "
               f"{len(res['not_done'])} not done")


@maintenance.command("enable")
@click.argument("name")
@pass_settings
def maintenance_enable(s, name):
    """Put node NAME into maintenance and move its instances away.

    It receives no new instances. The leader places each of its containers
    and VMs on another node (by free capacity and server groups) and has
    NAME move it there, a few at a time (cluster.max_parallel_moves): a
    container by ct send, a VM by vm migrate (live while it runs). One
    line of progress as each move begins and ends; an instance that cannot
    move is reported and stays, running, unless its evacuate setting is
    stop (osctl ct set evacuate).

    \b
    Example:
      osctl cluster node maintenance enable node2
    """
    _maintenance(s, name, True)


@maintenance.command("disable")
@click.argument("name")
@pass_settings
def maintenance_disable(s, name):
    """Take node NAME out of maintenance and bring back what left it.

    \b
    Example:
      osctl cluster node maintenance disable node2
    """
    _maintenance(s, name, False)
