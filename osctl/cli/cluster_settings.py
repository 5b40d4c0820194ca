"""An instance's settings that live in the cluster's records, as ``ct set``
and ``vm set`` commands: ``ha`` (containers) and ``evacuate``."""

from __future__ import annotations

import click

from .common import call, pass_settings, show


def instance_settings(group: click.Group, kind: str) -> None:
    """``<kind> set ha`` (containers) and ``<kind> set evacuate`` in ``group``:
    an instance's settings that live in the cluster's records."""
    noun, example = ("container", "web1") if kind == "ct" else ("VM", "vm1")

    def set_(s, id: str, **settings) -> None:
        show(s, call(s, "cluster.instance.set", {"kind": kind, "id": id, **settings}),
             ["kind", "id", "node", "ha", "standby", "evacuate", "replica_at"])

    if kind == "ct":
        @group.command("ha")
        @click.argument("id")
        @click.argument("value", type=click.BOOL, metavar="on|off")
        @click.option("--standby", metavar="NODE", help="The node its replica is kept on (with on).")
        @pass_settings
        def set_ha(s, id, value, standby):
            """Replicate a container to a standby node, restarted there if its node dies.

            Every cluster.replication_interval seconds the container's
            changes are sent to NODE (ct send's sync, never its state); if
            its node dies, the leader starts it on NODE from the last
            replica: what it wrote since is lost (up to one interval). off:
            no more replicas, the one on NODE is dropped.

            \b
            Examples:
              osctl ct set ha web1 on --standby node3
              osctl ct set ha web1 off
            """
            set_(s, id, ha=value, standby=standby)

    @group.command("evacuate")
    @click.argument("id")
    @click.argument("action", type=click.Choice(["migrate", "live-migrate", "stop"]))
    @pass_settings
    def set_evacuate(s, id, action):
        set_(s, id, evacuate=action)

    set_evacuate.help = (
        f"What node maintenance does with a {noun}: migrate, live-migrate or stop.\n\n"
        "migrate moves it (a running VM stopped, moved and started again); live-migrate "
        "moves a running VM live (a container goes as for migrate); stop stops it where "
        f"it is (it starts again when maintenance ends).\n\n\b\nExample:\n  "
        f"osctl {kind} set evacuate {example} {'stop' if kind == 'ct' else 'live-migrate'}")
