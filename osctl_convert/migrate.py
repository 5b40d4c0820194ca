"""``osctl-convert vz6 migrate``: an OpenVZ Legacy container moved to an
osctld node with a short downtime, speaking ``ct send``'s receive protocol.

It runs on the OpenVZ node as an osctld node's ``ct send`` does, with a key
the destination trusts (``osctl receive authorized-keys add``): every call
is ``ssh`` as the receive user, whose forced command hands it to the
destination's daemon, and the files go by rsync through the same trust
(its server end is the receive verb ``ct.receive.rsync``). The destination
sees a staged container as from ``ct send``; only the config stage differs
(``ct.receive.vz``: the settings mapped here, where NAMESERVER inherit and
DEVNODES can be resolved).

stage: mapped and registered staged there (an address or id taken there
refuses it before any copy). sync: an rsync pass while the container runs
(repeatable). transfer: ``vzctl stop`` (its venet routes go from this
node), the last pass, and the destination takes it over: the rootfs fix-ups
applied there, then started with its addresses. cleanup: the container is
disabled here (``vzctl set --disabled yes --onboot no``), its private area
kept as a way back; ``--delete`` destroys it instead. cancel (before
transfer): the destination keeps nothing. The state between the stages is a
JSON file per container (``/var/lib/osctl-convert/CTID.json``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

from . import mapping

STATE_DIR = "var/lib/osctl-convert"
KEY = "etc/osctl-convert/key"
RSYNC_OPTS = ["-aHAXSx", "--numeric-ids", "--delete"]  # what the receive verb accepts
LIVE_OK = (0, 24)  # rsync: 24, files vanished while the container ran
STAGED, SYNCED, TRANSFERRED = "staged", "synced", "transferred"
NOT_FOUND = "not_found"


class Failed(SystemExit):
    """A stage that failed: the message (exit status 1), and the error code
    of the destination's refusal if it was one."""

    def __init__(self, message: str, error_code: str | None = None) -> None:
        super().__init__(f"osctl-convert: {message}")
        self.error_code = error_code


def progress(stage: str, message: str) -> None:
    print(f"[{stage}] {message}", file=sys.stderr, flush=True)


@dataclass
class Migration:
    """Where a container's migration stands (its state file)."""
    ctid: str
    dest: str
    as_id: str
    token: str
    pool: str
    login: str
    stage: str = STAGED


def split_dest(dest: str) -> tuple[str, str]:
    """``host``, ``host:port`` or ``[v6]:port`` as (host, port); ValueError
    for anything else. osctld's ``ct send`` reads its destinations so too."""
    host, port = dest, "22"
    if dest.startswith("["):
        host, _, rest = dest[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else port
    elif dest.count(":") == 1:
        host, port = dest.split(":")
    if not host or host.startswith("-") or any(c.isspace() for c in host) \
            or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid destination {dest!r}: give host or host:port")
    return host, port


class Remote:
    """The destination's receive verbs, through ssh with this node's key."""

    def __init__(self, node, dest: str, login: str) -> None:
        self.dest, self.login = dest, login
        try:
            self.host, self.port = split_dest(dest)
        except ValueError as e:
            raise Failed(str(e)) from None
        self.key = node.path(KEY)
        self.known_hosts = node.path(f"{STATE_DIR}/known_hosts")
        if not os.path.exists(self.key):
            raise Failed(f"no key {self.key}: osctl-convert key gen, then on {dest}: "
                         "osctl receive authorized-keys add NAME < key.pub")

    def ssh(self) -> list[str]:
        return ["ssh", "-F", "none", "-T", "-i", self.key, "-p", self.port, "-l", self.login,
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=15"]

    def call(self, verb: str, args: dict) -> dict:
        """The verb's reply; its error raised as ``Failed`` (``.code`` kept)."""
        p = subprocess.run([*self.ssh(), "--", self.host, f"{verb} {json.dumps(args)}"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True)
        return self.reply(p.returncode, p.stdout, p.stderr)

    def reply(self, rc: int, out: str, err: str) -> dict:
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        try:
            reply = json.loads(lines[-1]) if lines else None
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            why = [ln for ln in err.strip().splitlines() if not ln.startswith("{")]
            raise Failed(f"{self.dest}: {why[-1] if why else f'ssh exited {rc}'}")
        if "error" in reply:
            raise Failed(f"{self.dest}: {reply['error'].get('message')}", reply["error"].get("code"))
        return reply.get("ok") or {}

    def rsync(self, src: str, token: str, stage: str, live: bool) -> None:
        """One pass of ``src`` into the transfer ``token`` names, its progress shown."""
        target = f"[{self.host}]:{token}" if ":" in self.host else f"{self.host}:{token}"
        start = time.monotonic()
        proc = subprocess.Popen(["rsync", *RSYNC_OPTS, *progress_opts(), "--rsh", shlex.join(self.ssh()),
                                 f"{src}/", target], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        last, done = 0.0, 0
        buf = b""
        try:
            while chunk := proc.stdout.read1(4096):
                *lines, buf = re.split(rb"[\r\n]", buf + chunk)
                for line in lines:
                    first = line.split()[:1]
                    if first and first[0].replace(b",", b"").isdigit():
                        done = int(first[0].replace(b",", b""))
                        if time.monotonic() - last >= 1:
                            last = time.monotonic()
                            progress(stage, f"{done / 2**20:.1f} MiB")
            err = proc.stderr.read().decode(errors="replace")
            rc = proc.wait()
        except BaseException:  # Ctrl-C: rsync (and its ssh) go; the destination then cancels the pass
            proc.kill()
            proc.wait()
            raise
        if any(ln.startswith("{") for ln in err.splitlines()):  # the destination's error
            self.reply(rc, err, err)
        if rc not in (LIVE_OK if live else (0,)):
            raise Failed(f"rsync to {self.dest} exited {rc}: {err.strip()[-500:]}")
        took = time.monotonic() - start
        progress(stage, f"pass done: {done / 2**20:.1f} MiB in {took:.1f} s" if done
                 else f"pass done in {took:.1f} s")


def progress_opts() -> list[str]:
    """rsync's running total where it has one (3.1 and later; CentOS 6, the
    usual OpenVZ node, ships 3.0.6: only the pass's summary line then)."""
    p = subprocess.run(["rsync", "--version"], capture_output=True, text=True)
    m = re.search(r"version (\d+)\.(\d+)", p.stdout)
    return ["--info=progress2"] if m and (int(m[1]), int(m[2])) >= (3, 1) else []


class Migrator:
    def __init__(self, node, ctid: str) -> None:
        self.node, self.ctid = node, ctid
        self.state_path = node.path(f"{STATE_DIR}/{ctid}.json")

    # --- state file ----------------------------------------------------------------

    def load(self, *stages: str) -> Migration:
        try:
            with open(self.state_path) as f:
                m = Migration(**json.load(f))
        except FileNotFoundError:
            raise Failed(f"container {self.ctid} is not being migrated: "
                         f"begin with osctl-convert vz6 migrate stage {self.ctid} DEST") from None
        if m.stage not in stages:
            raise Failed(f"container {self.ctid} is {m.stage}: that comes after "
                         + " or ".join(stages))
        return m

    def save(self, m: Migration | None) -> None:
        if m is None:
            os.unlink(self.state_path)
            return
        os.makedirs(os.path.dirname(self.state_path), mode=0o700, exist_ok=True)
        tmp = self.state_path + ".new"
        with open(tmp, "w") as f:
            json.dump(asdict(m), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)

    # --- the OpenVZ side -----------------------------------------------------------

    def vzctl(self, *args: str) -> str:
        p = subprocess.run(["vzctl", *args], stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if p.returncode != 0:
            raise Failed(f"vzctl {' '.join(args)} failed: {(p.stderr or p.stdout).strip()[-300:]}")
        return p.stdout

    def running(self) -> bool:
        return "running" in self.vzctl("status", self.ctid).split()

    # --- the stages -------------------------------------------------------------------

    def stage(self, dest: str, user: str | None, as_id: str | None, netif_name: str,
              pool: str | None, login: str) -> Migration:
        if os.path.exists(self.state_path):
            m = self.load(STAGED, SYNCED, TRANSFERRED)
            raise Failed(f"container {self.ctid} is being migrated to {m.dest} already "
                         f"({m.stage}): go on, or cancel it")
        remote = Remote(self.node, dest, login)
        conv = self.node.convert(self.ctid, netif_name)
        src, _ = self.node.source(self.ctid)
        sys.stdout.write(mapping.render(conv.report))
        settings = {k: v for k, v in asdict(conv.settings).items() if k not in ("private", "layout")}
        progress("stage", f"registering {self.ctid} at {dest}")
        reply = remote.call("ct.receive.vz", {
            "id": as_id or self.ctid, "pool": pool, "user": user or f"vz{self.ctid}",
            "settings": settings, "size": du(src)})
        m = Migration(self.ctid, dest, reply["id"], reply["token"], reply["pool"], login)
        try:
            self.save(m)
        except BaseException:
            remote.call("ct.receive.cancel", {"token": m.token})
            raise
        progress("stage", f"staged as {m.as_id} in pool {m.pool} at {dest}")
        return m

    def sync(self) -> Migration:
        m = self.load(STAGED, SYNCED)
        remote = Remote(self.node, m.dest, m.login)
        remote.rsync(self.node.source(self.ctid)[0], m.token, "sync", live=True)
        remote.call("ct.receive.synced", {"token": m.token})
        m.stage = SYNCED
        self.save(m)
        return m

    def transfer(self, start: bool = True) -> dict:
        m = self.load(STAGED, SYNCED)
        remote = Remote(self.node, m.dest, m.login)
        ploop = self.node.source(self.ctid)[1]
        was_running = self.running()
        stopped = time.monotonic()
        try:
            if was_running:
                progress("transfer", f"vzctl stop {self.ctid}")
                stopped = time.monotonic()
                self.vzctl("stop", self.ctid)
                if ploop:  # stop unmounted it: its files are read from VE_ROOT
                    self.vzctl("mount", self.ctid)
            remote.rsync(self.node.source(self.ctid)[0], m.token, "transfer", live=False)
            if m.stage == STAGED:  # the first pass: the destination saves it
                remote.call("ct.receive.synced", {"token": m.token})
            reply = remote.call("ct.receive.state", {"token": m.token, "start": start and was_running})
        except BaseException:
            if was_running:  # the destination does not hold it: it runs here again
                progress("transfer", f"failed: vzctl start {self.ctid} again")
                self.vzctl("start", self.ctid)
            raise
        m.stage = TRANSFERRED
        self.save(m)
        for line in reply.get("fixups") or []:
            progress("transfer", f"fix-up: {line}")
        if reply.get("started"):
            progress("transfer", f"started on {m.dest} {time.monotonic() - stopped:.1f} s after the stop")
        elif reply.get("start_error"):
            progress("transfer", f"not started on {m.dest}: {reply['start_error']}")
        return reply

    def cleanup(self, delete: bool = False) -> None:
        m = self.load(TRANSFERRED)
        if delete:
            progress("cleanup", f"vzctl destroy {self.ctid}")
            if self.node.source(self.ctid)[1]:
                self.vzctl("umount", self.ctid)
            self.vzctl("destroy", self.ctid)
        else:
            progress("cleanup", f"{self.ctid} disabled here (vzctl destroy {self.ctid} removes it)")
            self.vzctl("set", self.ctid, "--disabled", "yes", "--onboot", "no", "--save")
        self.save(None)
        progress("cleanup", f"done: {self.ctid} is {m.as_id} on {m.dest}")

    def cancel(self) -> None:
        m = self.load(STAGED, SYNCED)
        try:
            Remote(self.node, m.dest, m.login).call("ct.receive.cancel", {"token": m.token})
        except Failed as e:
            if e.error_code != NOT_FOUND:  # gone there already: done
                raise
        self.save(None)
        progress("cancel", f"{m.dest} keeps nothing of {self.ctid}")

    def now(self, dest: str, user: str | None, as_id: str | None, netif_name: str,
            pool: str | None, login: str, start: bool, delete: bool) -> None:
        """Every stage in turn; a failure (or Ctrl-C) before the take-over cancels."""
        self.stage(dest, user, as_id, netif_name, pool, login)
        try:
            self.sync()
            self.transfer(start)
        except BaseException:
            if self.load(STAGED, SYNCED, TRANSFERRED).stage != TRANSFERRED:
                progress("cancel", "cancelling")
                self.cancel()
            raise
        self.cleanup(delete)


def du(path: str) -> int:
    """Bytes under ``path``, for the destination's free-space check."""
    p = subprocess.run(["du", "-sxb", path], capture_output=True, text=True)
    try:
        return int(p.stdout.split()[0])
    except (IndexError, ValueError):
        return 0
