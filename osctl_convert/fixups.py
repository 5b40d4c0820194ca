"""What vzctl left inside an OpenVZ container's rootfs that breaks under LXC,
and its fix, per distribution family.

``plan`` only reads and returns the changes (``--dry-run`` prints them);
``apply`` makes them. Nothing else in the tenant's files is touched. The
tree is the tenant's: it is read and written through an object that keeps
every path inside it (``Tree``), so a planted link cannot point a change out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

EDIT, REMOVE, CREATE = "edit", "remove", "create"
FAMILIES = {"debian": "debian", "ubuntu": "debian", "devuan": "debian", "centos": "redhat",
            "fedora": "redhat", "almalinux": "redhat", "rocky": "redhat", "redhat": "redhat",
            "scientific": "redhat"}
LXC_TTYS = 4  # lxc.tty.max in osctld's container config
INTERFACES = "etc/network/interfaces"
NETWORK_SCRIPTS = "etc/sysconfig/network-scripts"
SYSCONFIG_NETWORK = "etc/sysconfig/network"
INITTAB = "etc/inittab"
POWERFAIL = "p0::powerfail:/sbin/init 0"
UPSTART_POWER = "etc/init/power-status-changed.conf"
UPSTART_POWER_TEXT = """# written by osctl-convert: LXC stops a container with SIGPWR
start on power-status-changed

exec /sbin/shutdown -h now "SIGPWR received"
"""
RC_DIRS = ("etc/init.d", "etc/rc.d/init.d") + tuple(
    f"{d}/rc{n}.d" for d in ("etc", "etc/rc.d") for n in "0123456S")


@dataclass
class Change:
    path: str  # relative to the root
    action: str  # EDIT, REMOVE, CREATE
    why: str
    content: str | None = None  # the new text (EDIT, CREATE)
    mode: int = 0o644  # the file's mode as the distribution ships it (EDIT, CREATE)

    def line(self) -> str:
        return f"{self.action:<6} /{self.path}: {self.why}"


class Tree(Protocol):
    """A rootfs read and written confined to it: osctld's
    ``distconfig.rootfs.RootFS`` (openat2, RESOLVE_IN_ROOT) is one."""

    def read(self, rel: str) -> str | None: ...
    def listdir(self, rel: str) -> list[str]: ...
    def exists(self, rel: str) -> bool: ...
    def write(self, rel: str, content: str, mode: int = 0o644) -> bool: ...
    def remove(self, rel: str) -> bool: ...


def family(distribution: str) -> str:
    return FAMILIES.get(distribution, "other")


# --- Debian family: venet0 stanzas in /etc/network/interfaces ------------------

_STANZA = re.compile(r"^\s*(iface|auto|allow-\S+|mapping|source|source-directory|rename)\b")
_VENET = re.compile(r"^venet0(:\d+)?$")


def _without_venet(text: str) -> str:
    out, skipping = [], False
    for line in text.splitlines(keepends=True):
        m = _STANZA.match(line)
        if m:
            words = line.split()
            skipping = False
            if m.group(1) in ("iface", "mapping") and len(words) > 1 and _VENET.match(words[1]):
                skipping = True
                continue
            if m.group(1) == "auto" or m.group(1).startswith("allow-"):
                kept = [w for w in words[1:] if not _VENET.match(w)]
                if len(kept) != len(words) - 1:
                    if kept:
                        out.append(f"{words[0]} {' '.join(kept)}\n")
                    continue
        elif skipping or re.match(r"^\s*# Auto generated venet0", line):
            continue  # the stanza's lines, or vzctl's comment over it
        out.append(line)
    return "".join(out)


def debian_network(tree: Tree) -> list[Change]:
    text = tree.read(INTERFACES)
    if text is None:
        return []
    new = _without_venet(text)
    return [Change(INTERFACES, EDIT, "venet0 stanzas removed (osctld writes the routed netif's)", new)] \
        if new != text else []


# --- Red Hat family: ifcfg-venet0*, GATEWAYDEV=venet0 --------------------------

def redhat_network(tree: Tree) -> list[Change]:
    out = [Change(f"{NETWORK_SCRIPTS}/{n}", REMOVE, "vzctl's venet0 configuration")
           for n in tree.listdir(NETWORK_SCRIPTS) if re.match(r"^ifcfg-venet0(:\d+)?$", n)]
    text = tree.read(SYSCONFIG_NETWORK)
    if text is not None:
        new = "".join(line for line in text.splitlines(keepends=True)
                      if not re.match(r"""^\s*(GATEWAYDEV|IPV6_DEFAULTDEV)=["']?venet0["']?\s*$""", line))
        if new != text:
            out.append(Change(SYSCONFIG_NETWORK, EDIT, "GATEWAYDEV/IPV6_DEFAULTDEV=venet0 removed", new))
    return out


RC_SYSINIT = "etc/rc.d/rc.sysinit"
UPSTART_TTY = "etc/init/tty.conf"
SECURETTY = "etc/securetty"
IFUP = "sbin/ifup"
# vzctl's redhat-add_ip.sh turns ifup's loopback test into this at each start.
_IFUP_PATCHED = re.compile(r'"\$\{IPADDR\}" = "127\.0\.0\.1"')


def redhat_start_udev(tree: Tree) -> list[Change]:
    """CentOS 6's rc.sysinit runs start_udev, which hangs or fails in a
    container; commented out, as Proxmox does."""
    text = tree.read(RC_SYSINIT)
    if text is None:
        return []
    new = re.sub(r"^(\s*/sbin/start_udev\b.*)$", r"#\1  # osctl-convert: no udev in a container",
                 text, flags=re.M)
    return [Change(RC_SYSINIT, EDIT, "/sbin/start_udev commented out (no udev in a container)", new,
                   0o755)] \
        if new != text else []


def redhat_tty(tree: Tree) -> list[Change]:
    """upstart's tty job: mingetty with --nohangup (a vhangup on LXC's
    ttys ends the getty at once, and it respawns in a loop)."""
    text = tree.read(UPSTART_TTY)
    if text is None:
        return []
    new = re.sub(r"(/sbin/mingetty)(?![^\n]*--nohangup)", r"\1 --nohangup", text)
    return [Change(UPSTART_TTY, EDIT, "mingetty --nohangup", new)] if new != text else []


def redhat_securetty(tree: Tree) -> list[Change]:
    """root may log in on LXC's console and ttys (the console getty is
    OpenVZ's otherwise)."""
    text = tree.read(SECURETTY)
    if text is None:
        return []
    have = set(text.split())
    add = [t for t in ("console", *(f"tty{n}" for n in range(1, LXC_TTYS + 1))) if t not in have]
    if not add:
        return []
    new = text + ("" if not text or text.endswith("\n") else "\n") + "".join(f"{t}\n" for t in add)
    return [Change(SECURETTY, EDIT, f"{' '.join(add)} added (LXC's console and ttys)", new, 0o600)]


def redhat_ifup(tree: Tree) -> list[Change]:
    """vzctl patched ifup's loopback test to ``"${IPADDR}" = "127.0.0.1"``
    (venet0 holds 127.0.0.1); the distribution's ``"${DEVICE}" = "lo"`` again."""
    text = tree.read(IFUP)
    if text is None or not _IFUP_PATCHED.search(text):
        return []
    return [Change(IFUP, EDIT, "vzctl's patch of the loopback test undone",
                   _IFUP_PATCHED.sub('"${DEVICE}" = "lo"', text), 0o755)]


# --- every family ---------------------------------------------------------------

def vzquota(tree: Tree) -> list[Change]:
    """vzctl's vzquota init script (set_ugid_quota.sh) and its rc links."""
    return [Change(f"{d}/{n}", REMOVE, "vzquota init script: fails in an unprivileged container")
            for d in RC_DIRS for n in tree.listdir(d) if re.match(r"^([SK]\d\d)?vzquota$", n)]


_INITTAB_LINE = re.compile(r"^([^#:]*):([^:]*):([^:]*):(.*)$")
_GETTY = re.compile(r"^(\S*getty)\b(.*?)\s(console|tty(\d+))\s*$")


def inittab(tree: Tree) -> list[Change]:
    """sysvinit: SIGPWR (LXC's stop signal) shuts down, as Proxmox sets it;
    vzctl's getty on ``console`` moves to tty1, gettys on ttys LXC lacks go."""
    text = tree.read(INITTAB)
    if text is None:
        return []
    out, whys, have_ttys = [], [], set()
    lines = text.splitlines()
    for line in lines:
        m = _INITTAB_LINE.match(line)
        g = _GETTY.match(m.group(4)) if m and m.group(3) == "respawn" else None
        if g and g.group(4):
            have_ttys.add(int(g.group(4)))
    for line in lines:
        m = _INITTAB_LINE.match(line)
        if not m:
            out.append(line)
            continue
        ident, levels, action, process = m.groups()
        if action in ("powerfail", "powerwait", "powerfailnow", "powerokwait") and line != POWERFAIL:
            whys.append(f"'{line}' removed")
            continue
        g = _GETTY.match(process) if action == "respawn" else None
        if g and g.group(3) == "console":
            if 1 in have_ttys:
                whys.append(f"'{line}' (OpenVZ console getty) removed: tty1 has one")
            else:
                new = f"{ident}:{levels}:respawn:{g.group(1)}{g.group(2)} tty1"
                whys.append(f"'{line}' (OpenVZ console getty) replaced by '{new}'")
                out.append(new)
                have_ttys.add(1)
            continue
        if g and g.group(4) and int(g.group(4)) > LXC_TTYS:
            whys.append(f"'{line}' removed: the container has {LXC_TTYS} ttys")
            continue
        out.append(line)
    if POWERFAIL not in out:
        out.append(POWERFAIL)
        whys.append(f"'{POWERFAIL}' added: LXC stops the container with SIGPWR")
    new = "\n".join(out) + "\n"
    return [Change(INITTAB, EDIT, "; ".join(whys), new)] if new != text else []


def upstart(tree: Tree) -> list[Change]:
    """upstart ignores SIGPWR unless a job listens for power-status-changed."""
    if not tree.exists("sbin/initctl") or not tree.listdir("etc/init") or tree.exists(UPSTART_POWER):
        return []
    return [Change(UPSTART_POWER, CREATE, "upstart shuts down on SIGPWR (LXC's stop)", UPSTART_POWER_TEXT)]


_LOGINUID = re.compile(r"^(\s*-?session\s+)(required|requisite)(\s+\S*pam_loginuid\.so\b.*)$", re.M)


def pam_loginuid(tree: Tree) -> list[Change]:
    out = []
    for name in tree.listdir("etc/pam.d"):
        text = tree.read(f"etc/pam.d/{name}")
        if text and _LOGINUID.search(text):
            out.append(Change(f"etc/pam.d/{name}", EDIT, "pam_loginuid.so made optional "
                              "(loginuid cannot be written in an unprivileged container)",
                              _LOGINUID.sub(r"\1optional\3", text)))
    return out


NETWORK = {"debian": (debian_network,),
           "redhat": (redhat_network, redhat_ifup, redhat_start_udev, redhat_tty, redhat_securetty),
           "other": ()}
COMMON = (vzquota, inittab, upstart, pam_loginuid)


def plan(tree: Tree, distribution: str) -> list[Change]:
    """The changes the rootfs needs; nothing is written."""
    return [c for fix in NETWORK[family(distribution)] + COMMON for c in fix(tree)]


def apply(tree: Tree, changes: list[Change]) -> None:
    for c in changes:
        if c.action == REMOVE:
            tree.remove(c.path)
        else:
            tree.write(c.path, c.content or "", c.mode)


def fix(tree: Tree, distribution: str) -> list[Change]:
    """The changes the rootfs needs, made; what they were."""
    changes = plan(tree, distribution)
    apply(tree, changes)
    return changes
