"""The daemon's own configuration file (YAML) and its defaults."""

from __future__ import annotations

import datetime
import grp
import ipaddress
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from osctl.protocol import OsctlError

from . import sysctls as _sysctls
from .model.naming import check_name
from .model.pool import BACKENDS

LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass
class DefaultPool:
    """The pool the daemon installs on first start when it has none."""

    name: str = "default"
    backend: str = "dir"
    path: str | None = None  # default: <state_dir>/pools/<name>
    dataset: str | None = None  # zfs: POOL/PATH on an existing zpool (made if missing)
    id_base: int = 1_000_000
    id_block_size: int = 524_288

    def __post_init__(self) -> None:
        # Said when the config is read: at the first start, a daemon would
        # otherwise stop on a pool it cannot install.
        if self.backend not in BACKENDS:
            raise ValueError(f"default_pool: backend must be dir, btrfs or zfs, not {self.backend!r}")
        if self.backend == "zfs" and not self.dataset:
            raise ValueError("default_pool: a zfs default pool needs dataset: POOL/PATH "
                             "(on an existing zpool; the dataset is made if missing)")
        if self.dataset is not None and self.backend != "zfs":
            raise ValueError("default_pool: dataset is for backend zfs")


ACCELERATORS = ("kvm", "tcg")


@dataclass
class VmPolicy:
    """How VMs run on this node, and the resource rules every VM must meet.

    ``accelerator`` is ``kvm`` on real nodes (hardware virtualisation, /dev/kvm
    usable); ``tcg`` is QEMU's emulator, for nodes where KVM is missing or
    unusable (nested, shared test machines). The minimums are node policy
    (the seeds' rules: 1 to 8 cores, at least 256 MiB and 10 GiB).
    """

    accelerator: str = "tcg"
    qemu: str = "qemu-system-x86_64"
    min_cores: int = 1
    max_cores: int = 8
    min_memory: int = 256 << 20
    min_disk: int = 10 << 30
    # Seconds a clean ACPI shutdown may take before the VM is killed.
    stop_timeout: int = 60
    # The longest pause (ms) a live migration may plan for the guest at its
    # switch-over (QEMU's downtime-limit; its own default).
    migrate_downtime: int = 300

    def __post_init__(self) -> None:
        if self.accelerator not in ACCELERATORS:
            raise ValueError(f"vm.accelerator must be one of {', '.join(ACCELERATORS)}")
        if not 1 <= self.min_cores <= self.max_cores:
            raise ValueError("vm: need 1 <= min_cores <= max_cores")
        if not 1 <= self.migrate_downtime <= 2_000_000:
            raise ValueError("vm.migrate_downtime is 1 to 2000000 ms")


@dataclass
class NetConfig:
    """Node-wide network settings.

    ``interconnect``: the private IPv4 range from which every routed netif
    gets a /30 (host veth .1, container .2); its size bounds the number of
    netifs of the node. ``veth_prefix``: host veth names are this prefix and
    the netif's allocated index (``osv12``), so they fit the 15-character
    limit whatever the container's id, and stay the same across restarts.
    """

    interconnect: str = "10.100.0.0/16"
    veth_prefix: str = "osv"

    def __post_init__(self) -> None:
        net = ipaddress.ip_network(self.interconnect)
        if net.version != 4 or net.prefixlen > 30:
            raise ValueError("net.interconnect must be an IPv4 network of /30 or larger")
        if not re.fullmatch(r"[a-z]{1,6}", self.veth_prefix):
            raise ValueError("net.veth_prefix must be 1-6 letters a-z")


DAY = 86400


@dataclass
class DeletionPolicy:
    """Staged deletion (``ct del --at``): each stage's seconds from the deletion
    date (the seeds': announced 5 days before, data gone 3 days after,
    backups 32, the name free again 38). Seconds, so that tests can run a
    deletion through in moments. ``notice``: the shortest time to the date in
    seconds; null is the seeds' rule, tomorrow at midnight in the group's
    zone. ``check_every``: how often the daemon looks for due stages."""

    prepare: float = 5 * DAY
    hard: float = 3 * DAY
    purge: float = 32 * DAY
    recycle: float = 38 * DAY
    notice: float | None = None
    check_every: float = 60.0

    def __post_init__(self) -> None:
        if not 0 <= self.hard <= self.purge <= self.recycle or self.prepare < 0:
            raise ValueError("deletion: need prepare >= 0 and 0 <= hard <= purge <= recycle")
        if self.notice is not None and self.notice < 0:
            raise ValueError("deletion.notice must be null or at least 0")
        if not 0.1 <= self.check_every <= DAY:
            raise ValueError("deletion.check_every must be 0.1 to 86400 seconds")

    def offsets(self) -> dict[str, float]:
        """Each stage's seconds from the deletion date."""
        return {"prepare": -self.prepare, "soft": 0.0, "hard": self.hard,
                "purge": self.purge, "recycle": self.recycle}


@dataclass
class MaintenanceConfig:
    """How maintenance windows are counted and checked.

    ``unit``: the seconds in one unit of a group's maintenance-start,
    maintenance-end and notification-leadtime: 3600 (hours, the platform's
    record); a test node sets 1, so that a window can start seconds later.
    ``in_maintenance_cap``: seconds after which the daemon resets a group's
    in_maintenance by itself. ``check_every``: seconds between the daemon's
    looks at due maintenances and expired in_maintenance marks.
    """

    unit: int = 3600
    in_maintenance_cap: int = 3600
    check_every: float = 30.0

    def __post_init__(self) -> None:
        if not 1 <= self.unit <= 3600 or 86400 % self.unit:
            raise ValueError("maintenance.unit must be 1 to 3600 seconds and divide a day")
        if self.in_maintenance_cap < 1 or self.check_every <= 0:
            raise ValueError("maintenance: in_maintenance_cap and check_every must be positive")


@dataclass
class ConsumptionConfig:
    """What the sampler of consumption records does (osctld/consumption.py).

    ``interval``: seconds between samples, which is also the most a kill -9
    can lose. ``clock_start``: for tests only, the time (ISO 8601) the
    records' clock shows when the daemon starts, from which it runs on at
    the real pace, so that a test sees a month boundary pass; null is the
    system clock.
    """

    interval: float = 300.0
    clock_start: str | None = None

    def __post_init__(self) -> None:
        if not 0.2 <= float(self.interval) <= 86400:
            raise ValueError("consumption.interval must be 0.2 to 86400 seconds")
        if self.clock_start is not None:
            start = datetime.datetime.fromisoformat(str(self.clock_start))
            if start.tzinfo is None:
                raise ValueError("consumption.clock_start needs a time zone (...Z or +00:00)")


@dataclass
class MetricsConfig:
    """The Prometheus endpoint: off (``listen: null``) or ``host:port``,
    meant for a local address (it has no access control)."""

    listen: str | None = None

    def __post_init__(self) -> None:
        if self.listen is not None:
            self.address()

    def address(self) -> tuple[str, int]:
        host, sep, port = str(self.listen).rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
            raise ValueError(f"metrics.listen must be host:port, got {self.listen!r}")
        return host.strip("[]"), int(port)


@dataclass
class ClusterConfig:
    """This node as a member of a cluster on etcd (osctld/cluster/).

    ``endpoints``: the etcd members' client URLs (``http://ip:2379``), tried
    in turn; ``node``: this node's name in the cluster; ``address``: where
    the other members reach it (ct send, vm migrate). ``lease_ttl``: seconds
    its membership key lives unrefreshed (refreshed every third of it);
    ``fence_margin``: seconds past the TTL before another node may act on
    its instances (and by which it has stopped its HA instances itself).
    ``max_parallel_moves``: moves at once when a node is evacuated;
    ``replication_interval``: seconds between the incremental sends of an
    HA instance to its standby.
    """

    endpoints: list[str] = field(default_factory=list)
    node: str = ""
    address: str = ""
    lease_ttl: int = 6
    fence_margin: int = 4
    max_parallel_moves: int = 2
    replication_interval: int = 30

    def __post_init__(self) -> None:
        if not isinstance(self.endpoints, list) or not self.endpoints:
            raise ValueError("cluster.endpoints must be a list of etcd URLs (http://ip:2379)")
        for url in self.endpoints:
            if not isinstance(url, str) or not re.fullmatch(r"https?://[^/\s]+:\d{1,5}/?", url):
                raise ValueError(f"cluster.endpoints: {url!r} is not http(s)://host:port")
        # Its send key is authorized on the others as "cluster-<node>", a key name.
        if not isinstance(self.node, str) or len(self.node) > 55:
            raise ValueError("cluster.node must be this node's name, up to 55 characters")
        try:
            check_name("node", self.node)
        except OsctlError as e:
            raise ValueError(f"cluster.node: {e.message}") from None
        try:
            ipaddress.ip_address(self.address)
        except ValueError:
            raise ValueError(f"cluster.address must be this node's IP address, "
                             f"got {self.address!r}") from None
        for name, lo, hi in (("lease_ttl", 2, 300), ("fence_margin", 1, 300),
                             ("max_parallel_moves", 1, 64), ("replication_interval", 5, 86400)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"cluster.{name} must be an integer from {lo} to {hi}")


@dataclass
class Config:
    state_dir: Path = Path("/var/lib/osctld")
    run_dir: Path = Path("/run/osctld")
    socket: Path | None = None  # default: <run_dir>/osctld.sock
    # The socket for accounts (frontends acting for tenants): off when null.
    account_socket: Path | None = None
    # The Unix group (name or gid) that may connect to it; null: any user
    # (only registered accounts are answered either way).
    account_group: str | int | None = None
    autostart_parallelism: int = 4
    log_level: str = "info"
    # Built template root filesystems, shared by every pool of the node.
    cache_dir: Path | None = None  # default: <state_dir>/cache
    templates_dir: Path | None = None  # default: the templates/ beside the package
    default_pool: DefaultPool | None = field(default_factory=DefaultPool)
    max_frame: int = 4 * 1024 * 1024
    # How long a command waits for a lock held by another before "busy".
    lock_timeout: float = 300.0
    # Seconds between readings of every running server's CPU time: the CPU %
    # of ct ls/show and vm show is over the last such interval.
    cpu_interval: float = 10.0
    # /proc views: "own" (osctld runs lxcfs on <run_dir>/lxcfs), "off", or the
    # mount point of an lxcfs run by someone else (/var/lib/lxcfs).
    lxcfs: str = "own"
    # The largest cpu-limit a container or group may get, in cores.
    max_cpu_limit: float = 8.0
    # The daemon's cgroup tree: <its own cgroup>/<cgroup_root>/pool.<name>/...
    cgroup_root: str = "osctl"
    # The quota every new user gets: null (none), a preset name, or a mapping.
    default_quota: str | dict | None = None
    # Kernel limits raised at start, laid over osctld.sysctls.DEFAULTS (null drops one).
    sysctls: dict | None = None
    net: NetConfig = field(default_factory=NetConfig)
    vm: VmPolicy = field(default_factory=VmPolicy)
    maintenance: MaintenanceConfig = field(default_factory=MaintenanceConfig)
    deletion: DeletionPolicy = field(default_factory=DeletionPolicy)
    consumption: ConsumptionConfig = field(default_factory=ConsumptionConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    # Membership of a cluster on etcd; null: the node runs alone.
    cluster: ClusterConfig | None = None
    # The system user other nodes log in as over SSH to send servers here
    # (its forced command reaches ``receive_socket``); null: receive nothing.
    receive_user: str | None = "osctld-recv"
    # The forced command's argv (before ``--socket S NAME``), run by sshd as
    # the receive user; null: ``osctld-receive`` beside the daemon.
    receive_command: list[str] | None = None

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)
        self.run_dir = Path(self.run_dir)
        self.socket = Path(self.socket) if self.socket else self.run_dir / "osctld.sock"
        self.account_socket = Path(self.account_socket) if self.account_socket else None
        if self.account_socket == self.socket:
            raise ValueError("account_socket must not be the root socket")
        if self.account_group is not None and (
                isinstance(self.account_group, bool)
                or not isinstance(self.account_group, (str, int))):
            raise ValueError("account_group must be a group name, a gid or null")
        self.account_gid  # a group that does not exist stops the daemon here
        self.cache_dir = Path(self.cache_dir) if self.cache_dir else self.state_dir / "cache"
        self.templates_dir = (
            Path(self.templates_dir)
            if self.templates_dir
            else Path(__file__).resolve().parent.parent / "templates"
        )
        if isinstance(self.net, dict):
            self.net = NetConfig(**self.net)
        if isinstance(self.default_pool, dict):
            self.default_pool = DefaultPool(**_known(DefaultPool, self.default_pool, "default_pool: "))
        if isinstance(self.vm, dict):
            self.vm = VmPolicy(**_known(VmPolicy, self.vm, "vm: "))
        if isinstance(self.maintenance, dict):
            self.maintenance = MaintenanceConfig(**_known(MaintenanceConfig, self.maintenance,
                                                          "maintenance: "))
        if isinstance(self.deletion, dict):
            self.deletion = DeletionPolicy(**_known(DeletionPolicy, self.deletion, "deletion: "))
        if isinstance(self.consumption, dict):
            self.consumption = ConsumptionConfig(
                **_known(ConsumptionConfig, self.consumption, "consumption: "))
        if isinstance(self.metrics, dict):
            self.metrics = MetricsConfig(**_known(MetricsConfig, self.metrics, "metrics: "))
        if isinstance(self.cluster, dict):
            self.cluster = ClusterConfig(**_known(ClusterConfig, self.cluster, "cluster: "))
        elif self.cluster is not None and not isinstance(self.cluster, ClusterConfig):
            raise ValueError("cluster must be a mapping or null")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        if self.lxcfs not in ("own", "off") and not Path(self.lxcfs).is_absolute():
            raise ValueError("lxcfs must be own, off or an absolute mount point")
        if not self.cgroup_root or "/" in self.cgroup_root or self.cgroup_root.startswith("."):
            raise ValueError("cgroup_root must be one plain directory name")
        if not 0.2 <= float(self.cpu_interval) <= 3600:
            raise ValueError("cpu_interval must be 0.2 to 3600 seconds")
        if self.autostart_parallelism < 1:
            raise ValueError("autostart_parallelism must be at least 1")
        if self.sysctls is not None and not isinstance(self.sysctls, dict):
            raise ValueError("sysctls must be a mapping of sysctl names to integers or null")
        _sysctls.wanted(self.sysctls)  # refuses what is not a sysctl

    @property
    def lxc_dir(self) -> Path:
        """LXC's lxcpath: generated container configs, command sockets (logs are the pools')."""
        return self.run_dir / "lxc"

    @property
    def vm_run_dir(self) -> Path:
        """Per-VM QMP and console sockets, pidfiles and console logs."""
        return self.run_dir / "vm"

    @property
    def account_gid(self) -> int | None:
        """``account_group`` as a gid (ValueError: no such group)."""
        if self.account_group is None or isinstance(self.account_group, int):
            return self.account_group
        try:
            return grp.getgrnam(self.account_group).gr_gid
        except KeyError:
            raise ValueError(f"account_group: no group {self.account_group!r}") from None

    @property
    def hook_socket(self) -> Path:
        return self.run_dir / "hook.sock"

    @property
    def receive_dir(self) -> Path:
        """The receive socket and the generated authorized_keys, which the
        receive user reads (sshd reads it as that user)."""
        return self.run_dir / "receive"

    @property
    def send_dir(self) -> Path:
        """This node's send key and the host keys of the nodes it sent to."""
        return self.state_dir / "send"

    @classmethod
    def load(cls, path: Path | None) -> "Config":
        if path is None:
            return cls()
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: {e}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping")
        try:
            return cls(**_known(cls, data, f"{path}: "))
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None


def _known(cls, data: dict, where: str) -> dict:
    """``data`` if it names only fields of dataclass ``cls``."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}expected a mapping")
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"{where}unknown keys: {', '.join(sorted(map(str, unknown)))}")
    return data
