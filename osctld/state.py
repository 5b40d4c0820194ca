"""The daemon's in-memory picture of its pools, read from and saved to them.

Lookups take ``[pool:]name``; a bare name is found in whichever pool holds
it, and is refused as ambiguous when several do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from osctl.protocol import CONFLICT, EXISTS, INVALID, NOT_FOUND, OsctlError

from .model.container import Container
from .model.deletion import RECYCLE, Deleted
from .model.flavor import Flavor
from .model.group import DEFAULT_GROUP, ROOT_GROUP, Group, ancestors, store_name
from .model.idmap import IdRange, overlaps
from .model.limits import Limits
from .model.maintenance import Maintenance
from .model.pool import Pool
from .model.quota import Usage, check
from .model.user import User
from .model.vm import VM
from .store import PoolStore, read_doc, write_doc


@dataclass
class PoolState:
    pool: Pool
    idrange: IdRange
    users: dict[str, User] = field(default_factory=dict)
    cts: dict[str, Container] = field(default_factory=dict)
    vms: dict[str, VM] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)  # by path; "/" and "/default" always
    # Planned, running and ended maintenances, by id (osctld/maintenance.py).
    maintenances: dict[str, Maintenance] = field(default_factory=dict)
    # Containers and VMs past their hard deletion stage, by (kind, id): their
    # names stay taken until the recycle stage.
    deleted: dict[tuple[str, str], Deleted] = field(default_factory=dict)
    flavors: dict[str, Flavor] = field(default_factory=dict)

    @property
    def store(self) -> PoolStore:
        return PoolStore(self.pool.conf_dir)

    @classmethod
    def load(cls, path: Path, image: Path | None = None, dataset: str | None = None) -> "PoolState":
        doc = read_doc(path / "conf" / "pool.yml")
        pool = Pool(name=doc["name"], backend=doc["backend"], path=path, image=image, dataset=dataset,
                    idmap=doc.get("idmap", "idmapped"), attrs=doc.get("attrs") or {})
        store = PoolStore(pool.conf_dir)
        ranges = store.load_all("id-range")
        state = cls(pool, IdRange.from_dict(ranges[0]) if ranges else IdRange())
        for kind, model, table, key in (("user", User, state.users, "name"),
                                        ("flavor", Flavor, state.flavors, "name"),
                                        ("ct", Container, state.cts, "id"),
                                        ("vm", VM, state.vms, "id")):
            for d in store.load_all(kind):
                obj = model.from_dict(d, pool.name)
                table[getattr(obj, key)] = obj
        for kind in ("ct", "vm"):
            for d in store.load_all(f"deleted/{kind}"):
                gone = Deleted.from_dict(d, pool.name)
                state.deleted[(gone.kind, gone.id)] = gone
        for d in store.load_tree("group"):
            g = Group.from_dict(d, pool.name)
            state.groups[g.path] = g
        for d in store.load_all("maintenance"):
            m = Maintenance.from_dict(d, pool.name)
            state.maintenances[m.id] = m
        if state.idrange.reconcile({u.name: u.block for u in state.users.values()
                                    if u.block is not None}):
            state.save_idrange()
        return state

    def __post_init__(self) -> None:
        for path in (ROOT_GROUP, DEFAULT_GROUP):  # they always exist
            self.groups.setdefault(path, Group(path, self.pool.name))

    def all_instances(self) -> list[Container | VM]:
        """Its containers, then its VMs."""
        return [*self.cts.values(), *self.vms.values()]

    def group(self, path: str) -> Group:
        try:
            return self.groups[path]
        except KeyError:
            raise OsctlError(NOT_FOUND, f"group {path!r} not found in pool {self.pool.name}") from None

    def flavor(self, name: str) -> Flavor:
        try:
            return self.flavors[name]
        except KeyError:
            raise OsctlError(NOT_FOUND, f"flavor {name!r} not found in pool {self.pool.name}") from None

    def effective_limits(self, group_path: str, own: Limits | None = None) -> Limits:
        """What binds a group (or, with ``own``, a container in it): per limit
        the tightest value on the path to the root."""
        out = own or Limits()
        for path in ancestors(group_path):
            out = out.tightest(self.groups[path].limits)
        return out

    def check_quota(self, changed: Container | VM, disk_quotas: bool = True) -> None:
        """Refuse ``changed`` (a container or VM being created or changed, not
        yet in ``cts`` or ``vms`` in its new form) if it takes its user over a
        quota. Containers and VMs count together (the seeds' servers), their
        netifs' addresses too (``Usage.of``), as ``user show`` shows them.

        ``disk_quotas``: whether the pool's backend can limit a container's
        disk (a VM's disk is always its own size).
        """
        user = self.users[changed.user]
        kind = self.instances(changed.kind)
        mine = self.instances_of(user.name)
        then = [s for s in mine if s is not kind.get(changed.id)] + [changed]
        check(user.name, user.quota, Usage.of(mine), Usage.of(then), changed, kind.get(changed.id),
              frozenset() if disk_quotas else frozenset({"disk"}))

    def instances_of(self, user: str) -> list[Container | VM]:
        """The containers and VMs of ``user``: what its quota counts."""
        return [s for s in self.all_instances() if s.user == user]

    def save_pool(self) -> None:
        write_doc(self.pool.conf_dir / "pool.yml", self.pool.to_dict())
        self.save_idrange()

    def save_idrange(self) -> None:
        self.store.save("id-range", "default", self.idrange.to_dict())

    def save_user(self, user: User) -> None:
        self.store.save("user", user.name, user.to_dict())

    def save_ct(self, ct: Container) -> None:
        self.store.save("ct", ct.id, ct.to_dict())

    def save_group(self, group: Group) -> None:
        self.store.save("group", store_name(group.path), group.to_dict())

    def delete_group(self, group: Group) -> None:
        self.store.delete("group", store_name(group.path))

    def save_maintenance(self, m: Maintenance) -> None:
        self.store.save("maintenance", m.id, m.to_dict())

    def save_vm(self, vm: VM) -> None:
        self.store.save("vm", vm.id, vm.to_dict())

    def save_flavor(self, flavor: Flavor) -> None:
        self.store.save("flavor", flavor.name, flavor.to_dict())

    def save_deleted(self, gone: Deleted) -> None:
        self.store.save(f"deleted/{gone.kind}", gone.id, gone.to_dict())
        self.deleted[(gone.kind, gone.id)] = gone

    def forget_deleted(self, gone: Deleted) -> None:
        """Its name is free again (the recycle stage)."""
        self.store.delete(f"deleted/{gone.kind}", gone.id)
        self.deleted.pop((gone.kind, gone.id), None)

    def check_name_free(self, kind: str, what: str, name: str) -> None:
        """Refuse the name of a deleted container or VM (``kind`` ct or vm)
        until its recycle stage, saying why and until when."""
        gone = self.deleted.get((kind, name))
        if gone is not None:
            free = datetime.fromtimestamp(gone.deletion.due[RECYCLE], timezone.utc)
            raise OsctlError(EXISTS, f"{what} {name!r} of pool {self.pool.name} was deleted; its "
                                     f"name can be used again from {free.isoformat(timespec='seconds')}")

    def instances(self, kind: str) -> dict[str, Container] | dict[str, VM]:
        """The pool's containers (``kind`` "ct") or VMs ("vm"), by id."""
        return self.vms if kind == "vm" else self.cts

    def save_instance(self, inst: Container | VM) -> None:
        """A container's or a VM's config (netif changes touch both alike)."""
        self.store.save(inst.kind, inst.id, inst.to_dict())


def matching(instances: Iterable, pool: str | None = None, user: str | None = None,
             state: str | None = None) -> list:
    """Containers or VMs of a pool, of a user, in a state (None: any)."""
    return [s for s in instances
            if (pool is None or s.pool == pool) and (user is None or s.user == user)
            and (state is None or s.state == state)]


def split_ref(ref: str) -> tuple[str | None, str]:
    if not isinstance(ref, str) or not ref:
        raise OsctlError(INVALID, f"invalid reference {ref!r}")
    pool, sep, name = ref.rpartition(":")
    return (pool if sep else None), name


class Registry:
    def __init__(self) -> None:
        self.pools: dict[str, PoolState] = {}

    # --- pools ----------------------------------------------------------------

    def pool(self, name: str | None) -> PoolState:
        """A pool by name; None means the default: "default" if present, else the only one."""
        if name is None:
            if "default" in self.pools:
                return self.pools["default"]
            if len(self.pools) == 1:
                return next(iter(self.pools.values()))
            if not self.pools:
                raise OsctlError(NOT_FOUND, "no pool: install one with 'osctl pool install'")
            raise OsctlError(INVALID, "several pools: name one with --pool")
        try:
            return self.pools[name]
        except KeyError:
            raise OsctlError(NOT_FOUND, f"pool {name!r} not found") from None

    # --- lookups ----------------------------------------------------------------

    def _find(self, kind: str, ref: str, attr: str):
        pool_name, name = split_ref(ref)
        pools = [self.pool(pool_name)] if pool_name else list(self.pools.values())
        hits = [(p, getattr(p, attr)[name]) for p in pools if name in getattr(p, attr)]
        if not hits:
            raise OsctlError(NOT_FOUND, f"{kind} {ref!r} not found")
        if len(hits) > 1:
            where = ", ".join(f"{p.pool.name}:{name}" for p, _ in hits)
            raise OsctlError(INVALID, f"{kind} {name!r} is in several pools: give one of {where}")
        return hits[0]

    def user(self, ref: str) -> tuple[PoolState, User]:
        return self._find("user", ref, "users")

    def ct(self, ref: str) -> tuple[PoolState, Container]:
        return self._find("container", ref, "cts")

    def vm(self, ref: str) -> tuple[PoolState, VM]:
        return self._find("VM", ref, "vms")

    def maintenance(self, ref: str) -> tuple[PoolState, Maintenance]:
        return self._find("maintenance", ref, "maintenances")

    def instance(self, kind: str, ref: str) -> tuple[PoolState, Container | VM]:
        """A container (``kind`` "ct") or a VM ("vm")."""
        return self.vm(ref) if kind == "vm" else self.ct(ref)

    def all_vms(self) -> list[VM]:
        return [v for p in self.pools.values() for v in p.vms.values()]

    def all_users(self) -> list[User]:
        return [u for p in self.pools.values() for u in p.users.values()]

    def all_cts(self) -> list[Container]:
        return [c for p in self.pools.values() for c in p.cts.values()]

    # --- ID map conflicts -------------------------------------------------------

    def taken_ranges(self, exclude: User | None = None) -> list[tuple[str, int, int, str]]:
        """Every host UID/GID range held: (kind, start, end, holder)."""
        out = []
        for p in self.pools.values():
            for u in p.users.values():
                if u is exclude:
                    continue
                out += [(k, s, e, f"{p.pool.name}:{u.name}") for k, s, e in u.host_ranges()]
        return out

    def check_map_free(self, user: User) -> None:
        taken = self.taken_ranges(exclude=user)
        for kind, start, end in user.host_ranges():
            for tkind, ts, te, holder in taken:
                if tkind == kind and overlaps(start, end, ts, te):
                    raise OsctlError(
                        CONFLICT,
                        f"{kind.upper()} range {start}-{end - 1} overlaps "
                        f"{ts}-{te - 1} held by user {holder}",
                    )

    def check_pool_free(self, incoming: PoolState) -> None:
        """Refuse an import whose users would overlap users already here."""
        if incoming.pool.name in self.pools:
            raise OsctlError(CONFLICT, f"a pool named {incoming.pool.name!r} is already imported")
        for u in incoming.users.values():
            self.check_map_free(u)
