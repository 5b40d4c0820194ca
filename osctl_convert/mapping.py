"""An OpenVZ Legacy container's config mapped to osctld's container settings.

Pure: no I/O. What needs the node (the host's resolvers for ``NAMESERVER
inherit``, the numbers of a DEVNODES node) is passed in. Every key of the
config gets one report entry: **mapped** (to what), **dropped** (why) or
**unknown**, so nothing is lost silently.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field
from typing import Callable

from . import vzconf
from .vzconf import PAGE, Pair, ValueError_

MAPPED, DROPPED, UNKNOWN = "mapped", "dropped", "unknown"
# Distributions osctld has a distconfig for (osctld.distconfig.DISTRIBUTIONS);
# ct import-vz passes the daemon's own list, osctl-convert uses this one.
DISTRIBUTIONS = ("alpine", "almalinux", "arch", "busybox", "centos", "debian", "devuan",
                 "fedora", "nixos", "rocky", "ubuntu")
# Proxmox's default when a pre-vSwap config says nothing usable about RAM.
DEFAULT_MEMORY = 512 << 20
# Nodes whose grant is one of osctld's features (osctld.runtime.features).
FEATURE_NODES = {"net/tun": "tun", "ppp": "ppp", "fuse": "fuse"}
FEATURE_DEVICES = {("c", 10, 200): "tun", ("c", 108, 0): "ppp", ("c", 10, 229): "fuse"}
KNOWN_NODES = {"net/tun": ("c", 10, 200), "ppp": ("c", 108, 0), "fuse": ("c", 10, 229)}
BEANCOUNTERS = ("KMEMSIZE", "LOCKEDPAGES", "PRIVVMPAGES", "SHMPAGES", "NUMPROC", "VMGUARPAGES",
                "OOMGUARPAGES", "NUMTCPSOCK", "NUMFLOCK", "NUMPTY", "NUMSIGINFO", "TCPSNDBUF",
                "TCPRCVBUF", "OTHERSOCKBUF", "DGRAMRCVBUF", "NUMOTHERSOCK", "NUMFILE", "DCACHESIZE",
                "DCACHE", "NUMIPTENT", "IPTENTRIES", "AVNUMPROC")
# Keys vzctl itself accepts and ignores (config.c PARAM_IGNORED) or global-only ones.
IGNORED_BY_VZCTL = ("VIRTUOZZO", "VE0CPUUNITS", "VZFASTBOOT", "NEIGHBOUR_DEVS", "ERROR_ON_ARPFAIL",
                    "VZWDOG", "IPTABLES_MODULES", "IP6TABLES", "CONFIG_CUSTOMIZED", "VE_STOP_MODE",
                    "SKIP_SYSCTL_SETUP", "SKIP_ARPDETECT", "VE_PARALLEL", "LOCKDIR", "DUMPDIR",
                    "LOGGING", "LOG_LEVEL", "LOGFILE", "VERBOSE", "DEF_OSTEMPLATE")
# Keys with a fixed reason to be dropped.
DROPPED_WHY = {
    **{k: "vzquota setting: no equivalent on osctld's storage backends"
       for k in ("DISKINODES", "QUOTATIME", "QUOTAUGIDLIMIT", "DISK_QUOTA")},
    "CAPABILITY": "osctld gives every container the same capability set (docs: seccomp and capabilities)",
    "CPUUNITS": "osctld has no per-container CPU weight; set one on its group",
    "CPUMASK": "osctld does not pin containers to CPUs", "NODEMASK": "osctld does not pin memory nodes",
    "IOPRIO": "no per-container I/O weight in osctld", "IOLIMIT": "no per-container I/O limit in osctld",
    "IOPSLIMIT": "no per-container I/O limit in osctld",
    "NETFILTER": "a network namespace has the whole netfilter", "IPTABLES": "a network namespace has the whole netfilter",
    "IPV6": "informational: IPv6 addresses come from IP_ADDRESS",
    "NETDEV": "physical NICs are not moved into containers; use a bridged netif",
    "MEMINFO": "LXC shows the memory limit in /proc/meminfo through lxcfs",
    "NAME": "osctld names containers by their id", "DESCRIPTION": "osctld keeps no description",
    "DISABLED": "osctld has no disabled flag: do not start it", "ORIGIN_SAMPLE": "vzctl's sample name",
    "CONFIGFILE": "vzctl's sample name", "TEMPLATE": "vzctl's template directory",
    "MOUNT_OPTS": "simfs mount options", "STOP_TIMEOUT": "osctld's stop timeout is given per stop",
    "VM_OVERCOMMIT": "no equivalent under cgroups", "PCI": "PCI devices are not passed to containers",
    "VETH": "deprecated by NETIF", "VE_ROOT": "the mount point on the OpenVZ node",
    "SEARCHDOMAIN": "osctld has no search-domain setting; it stays in the container's "
                    "/etc/resolv.conf, where vzctl wrote it",
}
FEATURE_WHY = {"sysfs": "sysfs is always mounted read-only by LXC", "nfs": "NFS mounts need the node's help",
               "nfsd": "no NFS server inside unprivileged containers",
               "bridge": "a network namespace may hold bridges", "sit": "tunnels are created in the netns",
               "ipip": "tunnels are created in the netns", "ipgre": "tunnels are created in the netns"}


@dataclass
class Entry:
    key: str
    value: str
    status: str  # MAPPED, DROPPED, UNKNOWN
    detail: str  # what it maps to, or why it is dropped


@dataclass
class Settings:
    """What ``ct import-vz`` creates: the fields of osctld's Container, as plain data."""
    distribution: str = "other"
    version: str = "unknown"
    hostname: str | None = None
    dns_resolvers: list[str] = field(default_factory=list)
    autostart: bool = False
    autostart_priority: int = 10
    limits: dict = field(default_factory=dict)  # Limits fields: memory, swap (bytes), cpu_limit (cores)
    disk: int | None = None  # bytes
    netifs: list[dict] = field(default_factory=list)  # NetIf fields
    devices: list[dict] = field(default_factory=list)  # DeviceGrant.to_dict()
    features: list[str] = field(default_factory=list)
    private: str | None = None  # VE_PRIVATE, where the rootfs is on the OpenVZ node
    layout: str = "simfs"


@dataclass
class Conversion:
    settings: Settings
    report: list[Entry]

    def to_dict(self) -> dict:
        return {"settings": asdict(self.settings), "report": [asdict(e) for e in self.report]}


def render(report: list[Entry]) -> str:
    """The report as a table: one key a line, status first."""
    width = max((len(e.key) for e in report), default=0)
    return "".join(f"{e.status:<8} {e.key:<{width}}  {e.value!r:<28} {e.detail}\n" for e in report)


class _Mapper:
    def __init__(self, conf: dict[str, str], ctid: str, host_resolvers: list[str],
                 distributions, netif_name: str, devnode: Callable[[str], tuple | None]) -> None:
        self.conf, self.ctid = conf, ctid
        self.host_resolvers, self.distributions = host_resolvers, distributions
        self.netif_name, self.devnode = netif_name, devnode
        self.s = Settings()
        self.done: dict[str, Entry] = {}

    def note(self, key: str, status: str, detail: str) -> None:
        self.done[key] = Entry(key, self.conf.get(key, ""), status, detail)

    def run(self) -> Conversion:
        self.memory()
        self.cpu()
        for key, value in self.conf.items():
            if key in self.done:
                continue
            handler = getattr(self, "k_" + key.lower(), None)
            try:
                if handler:
                    handler(key, value)
                elif key in DROPPED_WHY:
                    self.note(key, DROPPED, DROPPED_WHY[key])
                elif key in BEANCOUNTERS:
                    self.note(key, DROPPED, "beancounter: no equivalent under cgroups")
                elif key in IGNORED_BY_VZCTL:
                    self.note(key, DROPPED, "global or obsolete: vzctl ignores it too")
                else:
                    self.note(key, UNKNOWN, "not a key vzctl 4 knows")
            except ValueError_ as e:
                self.note(key, DROPPED, f"invalid value: {e}")
        self.s.features.sort()
        self.unclash()
        return Conversion(self.s, [self.done[k] for k in self.conf])

    def unclash(self) -> None:
        """A veth of NETIF may have the name the routed netif was to get
        (venet0 and eth0 side by side on OpenVZ): the routed one moves to
        the first free ethN."""
        routed = [n for n in self.s.netifs if n["type"] == "routed"]
        taken = {n["name"] for n in self.s.netifs if n["type"] != "routed"}
        if not routed or routed[0]["name"] not in taken:
            return
        free = next(f"eth{i}" for i in range(len(taken) + 1) if f"eth{i}" not in taken)
        self.done["IP_ADDRESS"].detail += f"; named {free}: NETIF has {routed[0]['name']}"
        routed[0]["name"] = free

    # --- memory and CPU: keys that only mean something together ---------------

    def _pair(self, key: str) -> Pair | None:
        if key not in self.conf:
            return None
        try:
            return vzconf.pair(self.conf[key], PAGE)
        except ValueError_ as e:
            self.note(key, DROPPED, f"invalid value: {e}")
            return None

    def memory(self) -> None:
        """vSwap (PHYSPAGES limit = RAM, SWAPPAGES limit = swap) as Proxmox
        reads it; an unlimited PHYSPAGES (pre-vSwap) takes RAM from
        VMGUARPAGES' barrier, else 512 MiB. Unlimited is never 0."""
        phys, swap, guar = self._pair("PHYSPAGES"), self._pair("SWAPPAGES"), self._pair("VMGUARPAGES")
        if phys and phys.limit is not None and "SWAPPAGES" in self.conf:
            self.s.limits["memory"] = phys.limit
            self.note("PHYSPAGES", MAPPED, f"memory limit {_size(phys.limit)}")
        else:
            src = "VMGUARPAGES" if guar and guar.barrier else None
            self.s.limits["memory"] = guar.barrier if guar and guar.barrier else DEFAULT_MEMORY
            if "PHYSPAGES" in self.conf and "PHYSPAGES" not in self.done:
                why = "unlimited" if phys and phys.limit is None else "no SWAPPAGES: not vSwap"
                self.note("PHYSPAGES", DROPPED, f"{why}; memory limit taken from "
                          + (f"VMGUARPAGES: {_size(self.s.limits['memory'])}" if src
                             else f"the default {_size(DEFAULT_MEMORY)}"))
            if src:
                self.note("VMGUARPAGES", MAPPED, f"memory limit {_size(self.s.limits['memory'])} "
                          "(its barrier: pre-vSwap config)")
        if swap:
            if swap.limit is None:
                self.note("SWAPPAGES", MAPPED, "no swap limit (unlimited)")
            else:
                self.s.limits["swap"] = swap.limit
                self.note("SWAPPAGES", MAPPED, f"swap limit {_size(swap.limit)} beyond memory")

    def cpu(self) -> None:
        """CPULIMIT is percent of one CPU, CPUS the CPUs seen: the tighter one
        becomes the CPU limit in cores."""
        cores: dict[str, float] = {}
        for key, scale in (("CPULIMIT", 100), ("CPUS", 1)):
            if key not in self.conf:
                continue
            try:
                n = vzconf.number(self.conf[key], 1, suffix_ok=False, unlimited_ok=True)
            except ValueError_ as e:
                self.note(key, DROPPED, f"invalid value: {e}")
                continue
            if n:
                cores[key] = n / scale
            else:
                self.note(key, DROPPED, "0 or unlimited: no CPU limit")
        if cores:
            win = min(cores, key=lambda k: cores[k])
            self.s.limits["cpu_limit"] = round(cores[win], 2)
            for key in cores:
                self.note(key, MAPPED, f"CPU limit {cores[win]:g} cores" if key == win
                          else f"{cores[key]:g} cores; the CPU limit is {win}'s, tighter")

    # --- one key each -------------------------------------------------------------

    def k_ostemplate(self, key: str, value: str) -> None:
        parts = value.lower().split("-")
        dist = parts[0]
        version = parts[1] if len(parts) > 1 and parts[1][:1].isdigit() else "unknown"
        if dist in self.distributions:
            self.s.distribution, self.s.version = dist, version
            self.note(key, MAPPED, f"distribution {dist} {version}")
        else:
            self.s.distribution, self.s.version = "other", version
            self.note(key, MAPPED, f"distribution other {version}: osctld has no distconfig for "
                                   f"{dist!r}, so it configures nothing inside")

    def k_hostname(self, key: str, value: str) -> None:
        self.s.hostname = value
        self.note(key, MAPPED, f"hostname {value}")

    def k_nameserver(self, key: str, value: str) -> None:
        inherit = value.strip() == "inherit"
        servers = list(self.host_resolvers) if inherit else vzconf.words(value)
        for s in servers:
            try:
                ipaddress.ip_address(s)
            except ValueError:
                raise ValueError_(f"{s!r} is not an IP address") from None
        self.s.dns_resolvers = servers
        self.note(key, MAPPED, ("inherit: the node's " if inherit else "") + "DNS resolvers "
                  + (" ".join(servers) or "(none)"))

    def k_onboot(self, key: str, value: str) -> None:
        self.s.autostart = value.strip().lower() == "yes"
        self.note(key, MAPPED, f"autostart {'on' if self.s.autostart else 'off'}")

    def k_bootorder(self, key: str, value: str) -> None:
        """Higher starts earlier in vzctl, lower in osctld; unset is last in
        both (osctld's default 10), so 1..10 become 9..0."""
        n = vzconf.number(value, 1, suffix_ok=False, unlimited_ok=False) or 0
        self.s.autostart_priority = max(0, 10 - min(n, 10))
        self.note(key, MAPPED, f"autostart priority {self.s.autostart_priority}")

    def k_diskspace(self, key: str, value: str) -> None:
        p = vzconf.pair(value, 1024, unlimited_ok=False)
        self.s.disk = p.limit
        self.note(key, MAPPED, f"disk quota {_size(p.limit)} (the hard limit), "
                               "where the pool's backend has quotas")

    def k_ve_private(self, key: str, value: str) -> None:
        self.s.private = vzconf.with_veid(value, self.ctid)
        self.note(key, MAPPED, f"the rootfs source {self.s.private}")

    def k_ve_layout(self, key: str, value: str) -> None:
        self.s.layout = value.split(":")[0]
        self.note(key, MAPPED, "copied as a directory" if self.s.layout == "simfs"
                  else "ploop: copied from VE_ROOT after 'vzctl mount'")

    def k_ip_address(self, key: str, value: str) -> None:
        addresses, notes = [], []
        for word in vzconf.words(value):
            try:
                iface = ipaddress.ip_interface(word)
            except ValueError:
                raise ValueError_(f"{word!r} is not an IP address") from None
            addresses.append(str(iface.ip))
            if "/" in word and iface.network.num_addresses > 1:
                notes.append(f"{word} held as {iface.ip} (routed: single addresses)")
        if not addresses:
            self.note(key, DROPPED, "no addresses")
            return
        self.s.netifs.insert(0, {"name": self.netif_name, "type": "routed", "addresses": addresses})
        self.note(key, MAPPED, f"routed netif {self.netif_name} with " + " ".join(addresses)
                  + "".join(f"; {n}" for n in notes))

    def k_netif(self, key: str, value: str) -> None:
        made = []
        for spec in filter(None, (s.strip() for s in value.split(";"))):
            opts = dict(kv.split("=", 1) for kv in spec.split(",") if "=" in kv)
            name = opts.get("ifname")
            if not name:
                raise ValueError_(f"{spec!r} has no ifname")
            if not opts.get("bridge"):
                made.append(f"{name} dropped: no bridge (its host end was routed by hand)")
                continue
            netif = {"name": name, "type": "bridge", "link": opts["bridge"], "addresses": []}
            if opts.get("mac"):
                netif["hwaddr"] = opts["mac"].lower()
            self.s.netifs.append(netif)
            made.append(f"bridged netif {name} on {opts['bridge']}"
                        + (f" hwaddr {netif['hwaddr']}" if "hwaddr" in netif else ""))
        self.note(key, MAPPED if any(m.startswith("bridged") for m in made) else DROPPED,
                  "; ".join(made) + " (addresses: as configured inside)")

    def _grant(self, kind: str, major: int, minor: int | None, mode: str, path: str | None) -> str:
        if kind == "b" and major == 7:
            return f"{kind} {major}:{minor} dropped: loop devices (vzctl refuses them too)"
        feature = FEATURE_DEVICES.get((kind, major, minor))
        if feature:
            if feature not in self.s.features:
                self.s.features.append(feature)
            return f"feature {feature}"
        self.s.devices.append({"type": kind, "major": major, "minor": "*" if minor is None else minor,
                               "mode": mode, "path": path})
        return f"device {kind} {major}:{'*' if minor is None else minor} {mode}" + (f" {path}" if path else "")

    def k_devices(self, key: str, value: str) -> None:
        made = []
        for spec in vzconf.words(value):
            f = spec.split(":")
            if len(f) != 4 or f[0] not in ("b", "c") or not f[1].isdigit() or not (f[2].isdigit() or f[2] == "all"):
                raise ValueError_(f"{spec!r}: give b|c:major:minor|all:perms")
            mode = "".join(c for c in "rw" if c in f[3])
            if f[3] == "none" or not mode:
                made.append(f"{spec} dropped: no access")
            else:
                made.append(self._grant(f[0], int(f[1]), None if f[2] == "all" else int(f[2]), mode, None)
                            + (" ('q', quota management, dropped)" if "q" in f[3] else ""))
        self.note(key, MAPPED if any(" dropped" not in m for m in made) else DROPPED, "; ".join(made))

    def k_devnodes(self, key: str, value: str) -> None:
        made = []
        for spec in vzconf.words(value):
            name, _, perms = spec.rpartition(":")
            name = name.lstrip("/").removeprefix("dev/")
            mode = "".join(c for c in "rw" if c in perms)
            if not name or perms == "none" or not mode:
                made.append(f"{spec} dropped: no access")
                continue
            if name in FEATURE_NODES:
                made.append(self._grant(*KNOWN_NODES[name], mode, None))
                continue
            numbers = self.devnode(name)
            if numbers is None:
                made.append(f"{spec} dropped: /dev/{name} is not on this node")
                continue
            made.append(self._grant(numbers[0], numbers[1], numbers[2], mode, f"/dev/{name}"))
        self.note(key, MAPPED if any(" dropped" not in m for m in made) else DROPPED, "; ".join(made))

    def k_features(self, key: str, value: str) -> None:
        made = []
        for spec in vzconf.words(value):
            name, _, state = spec.partition(":")
            if state != "on":
                made.append(f"{name} off")
            elif name == "ppp":
                if "ppp" not in self.s.features:
                    self.s.features.append("ppp")
                made.append("feature ppp")
            else:
                made.append(f"{name} dropped: {FEATURE_WHY.get(name, 'unknown feature')}")
        self.note(key, MAPPED if "feature ppp" in made else DROPPED, "; ".join(made))


def _size(n: int | None) -> str:
    if n is None:
        return "unlimited"
    for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def _no_devnodes(name: str) -> tuple | None:
    return None


def convert(conf: dict[str, str], ctid: str, host_resolvers: list[str] | None = None,
            distributions=DISTRIBUTIONS, netif_name: str = "eth0",
            devnode: Callable[[str], tuple | None] = _no_devnodes) -> Conversion:
    """``conf`` (from ``vzconf.parse``, CT keys over vz.conf's) as osctld's
    settings, with the report. ``host_resolvers`` resolves ``NAMESERVER
    inherit``; ``devnode(name)`` gives ``(type, major, minor)`` of /dev/NAME."""
    return _Mapper(conf, ctid, host_resolvers or [], distributions, netif_name, devnode).run()
