"""Container features: each one a named bundle of device grants, mount
entries, LXC keys and sysctls, all in the one table below.

``lxc`` (nesting) gives the container a fully visible proc and sysfs (a
new proc or sysfs mount in a user namespace is refused while the only ones
in view have locked mounts over parts of them, as LXC's own /proc/sys and
lxcfs's /proc files are) and mounts its cgroup hierarchies writable even
though its init does not mount them itself. ``docker`` is nesting plus
what Docker's daemon and rootless tools ask the kernel for: /dev/fuse
(fuse-overlayfs), /dev/net/tun (slirp4netns, vpnkit) and packet forwarding
in the container's own network namespace.

Every container runs under the seccomp deny-list of ``seccomp.py``; a
feature may take calls off it (``seccomp_allow``). Only ``keyctl`` does,
as Proxmox's feature of that name: kernel keyrings for software that needs
them. Nesting and Docker need nothing off the list: LXC and runc go on
without a session keyring of their own when keyctl says ENOSYS, and the rest
needs capabilities a user namespace never has.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from osctl.protocol import INVALID, OsctlError

from ..model.device import DeviceGrant


@dataclass(frozen=True)
class Feature:
    name: str
    description: str
    devices: tuple[DeviceGrant, ...] = ()
    mounts: tuple[str, ...] = ()  # lxc.mount.entry values
    keys: tuple[tuple[str, str], ...] = ()  # other LXC keys
    sysctls: tuple[tuple[str, str], ...] = ()  # set in the container's namespaces
    # Overrides of the base lxc.mount.auto, by kind (proc, sys, cgroup).
    mount_auto: dict[str, str] = field(default_factory=dict)
    seccomp_allow: tuple[str, ...] = ()  # calls taken off the deny-list


def _dev(major: int, minor: int, path: str) -> DeviceGrant:
    return DeviceGrant("c", major, minor, "rwm", path)


TUN = _dev(10, 200, "/dev/net/tun")
FUSE = _dev(10, 229, "/dev/fuse")
NESTING_MOUNTS = (
    "proc dev/.lxc/proc proc create=dir,optional 0 0",
    "sys dev/.lxc/sys sysfs create=dir,optional 0 0",
)
NESTING_CGROUP = {"cgroup": "cgroup:rw:force"}

FEATURES: dict[str, Feature] = {f.name: f for f in (
    Feature("tun", "TUN/TAP devices (VPNs)", devices=(TUN,)),
    Feature("fuse", "FUSE file systems", devices=(FUSE,)),
    Feature("kvm", "KVM virtual machines inside", devices=(_dev(10, 232, "/dev/kvm"),)),
    Feature("ppp", "PPP links", devices=(_dev(108, 0, "/dev/ppp"),)),
    Feature("lxc", "LXC containers inside (nesting)", mounts=NESTING_MOUNTS,
            mount_auto=NESTING_CGROUP),
    Feature("docker", "Docker inside: nesting, fuse, tun, forwarding",
            devices=(FUSE, TUN), mounts=NESTING_MOUNTS, mount_auto=NESTING_CGROUP,
            sysctls=(("net.ipv4.ip_forward", "1"), ("net.ipv6.conf.all.forwarding", "1"))),
    Feature("keyctl", "kernel keyrings (keys count against the user's kernel.keys quota)",
            seccomp_allow=("keyctl",)),
)}


def check_names(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise OsctlError(INVALID, f"unknown feature(s) {', '.join(unknown)}: "
                                  f"one of {', '.join(FEATURES)}")
    if not names:
        raise OsctlError(INVALID, "name at least one feature")
    return names


def bundles(names: list[str]) -> list[Feature]:
    return [FEATURES[n] for n in FEATURES if n in names]  # table order: stable configs


def lxc_lines(names: list[str]) -> list[str]:
    """The mount entries, keys and sysctls of the named features (not their devices)."""
    lines: list[str] = []
    for f in bundles(names):
        lines += [f"lxc.mount.entry = {m}" for m in f.mounts if f"lxc.mount.entry = {m}" not in lines]
        lines += [f"{k} = {v}" for k, v in f.keys]
        lines += [f"lxc.sysctl.{k} = {v}" for k, v in f.sysctls]
    return lines


def mount_auto(names: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in bundles(names):
        out.update(f.mount_auto)
    return out


def seccomp_allow(names: list[str]) -> set[str]:
    return {call for f in bundles(names) for call in f.seccomp_allow}


def grants(names: list[str]) -> list[DeviceGrant]:
    return [g for f in bundles(names) for g in f.devices]
