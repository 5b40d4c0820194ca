"""``osctl-convert``: run on an OpenVZ Legacy node (Python 3 and tar there,
nothing else), it shows how a container maps to osctld and writes an
archive of it that ``osctl ct import-vz`` takes.

``--root`` is where the node's files are (default /): the tests point it at
a directory laid out as an OpenVZ node, since no OpenVZ kernel runs there.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
import tempfile

from . import mapping, migrate, vzconf

VZ_CONF = "etc/vz/vz.conf"
CT_CONF = "etc/vz/conf/{ctid}.conf"
VPS_CONF = "etc/vzdump/vps.conf"


class Node:
    """An OpenVZ node's files, under ``root``."""

    def __init__(self, root: str) -> None:
        self.root = root

    def path(self, p: str) -> str:
        return os.path.join(self.root, p.lstrip("/"))

    def ct_conf_text(self, ctid: str) -> str:
        if not ctid.isdigit():
            raise SystemExit(f"osctl-convert: {ctid!r} is not a CTID (a number)")
        try:
            with open(self.path(CT_CONF.format(ctid=ctid))) as f:
                return f.read()
        except OSError as e:
            raise SystemExit(f"osctl-convert: container {ctid}: {e.strerror}: "
                             f"/{CT_CONF.format(ctid=ctid)}") from None

    def conf(self, ctid: str) -> dict[str, str]:
        """The CT's keys over vz.conf's defaults, as vzctl reads them."""
        try:
            with open(self.path(VZ_CONF)) as f:
                defaults = vzconf.parse(f.read())
        except OSError:
            defaults = {}
        own = vzconf.parse(self.ct_conf_text(ctid))
        # Only what says where and how the CT is stored comes from vz.conf.
        keep = {k: v for k, v in defaults.items() if k in ("VE_ROOT", "VE_PRIVATE", "VE_LAYOUT")}
        return {**keep, **own}

    def resolvers(self) -> list[str]:
        try:
            with open(self.path("etc/resolv.conf")) as f:
                return [w[1] for w in (line.split() for line in f) if len(w) > 1 and w[0] == "nameserver"]
        except OSError:
            return []

    def devnode(self, name: str) -> tuple | None:
        try:
            st = os.stat(self.path(f"dev/{name}"))
        except OSError:
            return None
        kind = "c" if stat.S_ISCHR(st.st_mode) else "b" if stat.S_ISBLK(st.st_mode) else None
        return (kind, os.major(st.st_rdev), os.minor(st.st_rdev)) if kind else None

    def source(self, ctid: str) -> tuple[str, bool]:
        """Where CTID's files are read from, and whether it is on ploop."""
        conf = self.conf(ctid)
        settings = mapping.convert(conf, ctid).settings
        path = source_dir(self, ctid, settings, conf)
        return path, path != self.path(settings.private or "")

    def convert(self, ctid: str, netif_name: str) -> mapping.Conversion:
        return mapping.convert(self.conf(ctid), ctid, host_resolvers=self.resolvers(),
                               netif_name=netif_name, devnode=self.devnode)


def show(node: Node, args) -> None:
    conv = node.convert(args.ctid, args.netif_name)
    if args.json:
        json.dump(conv.to_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(mapping.render(conv.report))


def source_dir(node: Node, ctid: str, settings: mapping.Settings, conf: dict[str, str]) -> str:
    """The rootfs to archive: the simfs private area, or a ploop CT's VE_ROOT while mounted."""
    if settings.layout == "simfs" and settings.private and \
            not os.path.exists(node.path(f"{settings.private}/root.hdd/DiskDescriptor.xml")):
        return node.path(settings.private)
    root = node.path(vzconf.with_veid(conf.get("VE_ROOT", f"/vz/root/{ctid}"), ctid))
    if not os.path.ismount(root):
        raise SystemExit(f"osctl-convert: container {ctid} is on ploop: 'vzctl mount {ctid}' first, "
                         f"then its files are read from {root}")
    return root


def export(node: Node, args) -> None:
    """A vzdump-style archive: the rootfs with ./etc/vzdump/vps.conf, compressed
    as FILE's suffix says (.tar, .tar.gz)."""
    conf = node.conf(args.ctid)
    conv = mapping.convert(conf, args.ctid)
    src = source_dir(node, args.ctid, conv.settings, conf)
    if os.path.exists(args.file):
        raise SystemExit(f"osctl-convert: {args.file} exists: remove it or give another name")
    with tempfile.TemporaryDirectory(prefix="osctl-convert.") as tmp:
        os.makedirs(os.path.join(tmp, os.path.dirname(VPS_CONF)))
        with open(os.path.join(tmp, VPS_CONF), "w") as f:
            f.write(node.ct_conf_text(args.ctid))
        argv = ["tar", "-c", "-a", "-f", args.file, "--numeric-owner", "--sparse", "--xattrs",
                "--xattrs-include=*", "--one-file-system",
                "-C", src, ".", "-C", tmp, f"./{VPS_CONF}"]
        if subprocess.run(argv).returncode not in (0, 1):  # 1: a file changed as it was read
            if os.path.exists(args.file):
                os.unlink(args.file)
            raise SystemExit("osctl-convert: tar failed")
    print(f"{args.file}: container {args.ctid}; on the osctld node: "
          f"osctl ct import-vz {os.path.basename(args.file)} --as-id ID --user USER")


def key_gen(node: Node, args) -> None:
    """This node's key to migrate with: the destination trusts its public
    half (``osctl receive authorized-keys add NAME < FILE.pub``)."""
    key = node.path(migrate.KEY)
    if not os.path.exists(key) or args.force:
        os.makedirs(os.path.dirname(key), mode=0o700, exist_ok=True)
        for p in (key, key + ".pub"):
            if os.path.exists(p):
                os.unlink(p)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                        f"osctl-convert@{os.uname().nodename}", "-f", key], check=True)
    with open(key + ".pub") as f:
        sys.stdout.write(f.read())


def run_migrate(node: Node, args) -> None:
    m = migrate.Migrator(node, args.ctid)
    if args.step in ("stage", "now"):
        opts = (args.dest, args.user, args.as_id, args.netif_name, args.to_pool, args.login)
        if args.step == "stage":
            m.stage(*opts)
        else:
            m.now(*opts, start=not args.no_start, delete=args.delete)
    elif args.step == "sync":
        m.sync()
    elif args.step == "transfer":
        m.transfer(start=not args.no_start)
    elif args.step == "cleanup":
        m.cleanup(delete=args.delete)
    else:
        m.cancel()


MIGRATE_EPILOG = """examples:
  osctl-convert key gen      (then on the osctld node: osctl receive authorized-keys add vz1 < key.pub)
  osctl-convert vz6 migrate now 101 node2.example.org --user alice
  osctl-convert vz6 migrate stage 101 node2.example.org:2222 --as-id web1
  osctl-convert vz6 migrate sync 101          (repeatable, while 101 runs)
  osctl-convert vz6 migrate transfer 101      (the downtime: stop, last pass, start there)
  osctl-convert vz6 migrate cleanup 101       (--delete: vzctl destroy 101)
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="osctl-convert", description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="/", help="where the OpenVZ node's files are [/]")
    sub = p.add_subparsers(dest="kind", required=True)
    vz6 = sub.add_parser("vz6", help="OpenVZ Legacy (vzctl, OpenVZ 6) containers").add_subparsers(
        dest="verb", required=True)
    s = vz6.add_parser("show", help="the mapping report of CTID; nothing is changed",
                       epilog="example: osctl-convert vz6 show 101")
    s.add_argument("ctid")
    s.add_argument("--netif-name", default="eth0", help="the routed netif's name [eth0]")
    s.add_argument("-j", "--json", action="store_true", help="settings and report as JSON")
    s.set_defaults(run=show)
    e = vz6.add_parser("export", help="an archive of CTID for 'osctl ct import-vz'",
                       epilog="example: osctl-convert vz6 export 101 /backup/vzdump-openvz-101.tar.gz")
    e.add_argument("ctid")
    e.add_argument("file", help="a new .tar or .tar.gz file")
    e.set_defaults(run=export)
    m = vz6.add_parser("migrate", help="move CTID to an osctld node with a short downtime",
                       description=migrate.__doc__.split("\n\n")[0], epilog=MIGRATE_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = m.add_subparsers(dest="step", required=True)
    helps = {"stage": "map and register CTID staged at DEST (nothing copied)",
             "sync": "copy the private area while CTID runs (repeatable)",
             "transfer": "stop CTID, copy the last changes, start it at DEST",
             "cleanup": "after transfer: disable CTID here (--delete: destroy it)",
             "cancel": "before transfer: DEST keeps nothing",
             "now": "stage, sync, transfer and cleanup; a failure or Ctrl-C cancels"}
    for step, why in helps.items():
        s = steps.add_parser(step, help=why, epilog=MIGRATE_EPILOG,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        s.add_argument("ctid")
        if step in ("stage", "now"):
            s.add_argument("dest", help="the osctld node: host or host:port")
            s.add_argument("--user", help="its user there (made if missing) [vzCTID]")
            s.add_argument("--as-id", help="its id there [CTID]")
            s.add_argument("--netif-name", default="eth0", help="the routed netif's name [eth0]")
            s.add_argument("--to-pool", help="the pool there [its default]")
            s.add_argument("--login", default="osctld-recv", help="the receive user there [osctld-recv]")
        if step in ("transfer", "now"):
            s.add_argument("--no-start", action="store_true", help="leave it stopped there")
        if step in ("cleanup", "now"):
            s.add_argument("--delete", action="store_true",
                           help="vzctl destroy CTID here, rather than disable it")
        s.set_defaults(run=run_migrate, step=step)
    k = sub.add_parser("key", help="this node's key to migrate with").add_subparsers(dest="verb", required=True)
    g = k.add_parser("gen", help="make it (if missing) and print its public half",
                     epilog="example: osctl-convert key gen > vz1.pub")
    g.add_argument("--force", action="store_true", help="replace the key there is")
    g.set_defaults(run=key_gen)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        args.run(Node(args.root), args)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
