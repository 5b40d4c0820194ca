"""An instance's settings that live in the cluster's records, as ``ct set``
and ``vm set`` commands: ``ha`` and ``evacuate``."""

from __future__ import annotations

import click

from .common import call, pass_settings, show


def instance_settings(group: click.Group, kind: str) -> None:
    """``<kind> set ha`` and ``<kind> set evacuate`` in ``group``:
    an instance's settings that live in the cluster's records."""
    noun, example = ("container", "web1") if kind == "ct" else ("VM", "vm1")

    def set_(s, id: str, **settings) -> None:
        show(s, call(s, "cluster.instance.set", {"kind": kind, "id": id, **settings}),
             ["kind", "id", "node", "ha", "standby", "evacuate", "replica_at"])

    @group.command("ha")
    @click.argument("id")
    @click.argument("value", type=click.BOOL, metavar="on|off")
    @click.option("--standby", metavar="NODE", help="The node its replica is kept on (with on).")
    @pass_settings
    def set_ha(s, id, value, standby):
        set_(s, id, ha=value, standby=standby)

    how = ("its changes are sent to NODE (ct send's sync, never its state)" if kind == "ct" else
           "a snapshot of its files, taken with the guest paused for that instant, is sent to "
           "NODE (osctl vm replicate: between btrfs pools only what changed; from other pools "
           "only while it is stopped)")
    set_ha.help = (
        f"Replicate a {noun} to a standby node, restarted there if its node dies.\n\n"
        f"Every cluster.replication_interval seconds {how}; if its node dies, the leader "
        "starts it on NODE from the last replica: what it wrote since is lost (up to one "
        "interval)" + ("" if kind == "ct" else ", and the disk is as a power cut would leave "
                       "it (crash-consistent)") + ". off: no more replicas, the one on NODE is "
        f"dropped.\n\n\b\nExamples:\n  osctl {kind} set ha {example} on --standby node3\n"
        f"  osctl {kind} set ha {example} off")

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
