"""Live migration of a running VM with its local disk: the QMP sequence.

Two QEMUs take part. The destination's (started with the same machine,
CPU model, devices, cores and memory as the running source, its disk made
at the same size, and ``-incoming defer -S``) listens twice, on addresses
its node chooses: for the RAM stream (``migrate-incoming tcp:HOST:0``; the
port QEMU took is read back from ``query-migrate``) and for the disk (an NBD
server on a socket the daemon bound and hands over with ``getfd``, its disk
exported writable). The source mirrors its disk into that export
(``drive-mirror`` in ``write-blocking`` copy mode: once the job is ready,
every guest write reaches both disks before it completes, so the disks stay
identical without a last pass), then migrates its RAM within a downtime
limit; QEMU pauses it for the last pass, and once the migration has
completed, cancelling the ready mirror job ends it cleanly (QEMU reports it
completed, not cancelled: the target stays in sync). The destination then
stops its NBD export and server, which hold its disk writable and would
refuse the guest's own writer, and resumes.

The source's side is ``send``: it drives the source QEMU and asks a
``Target`` (the destination, here or on another node through the receive
channel) for its steps. Whatever fails or is cancelled before the
destination resumed is rolled back: the migration cancelled, the source
resumed if it was paused, the mirror job cancelled, the destination's QEMU
and files removed by ``Target.abort``. The VM runs on at the source, and
nothing of it is left at the destination.

``listen`` and ``resume`` are the destination's side, run by the node that
holds the destination QEMU.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from dataclasses import asdict, dataclass
from typing import Awaitable, Callable, Iterator, Protocol

from osctl.protocol import INTERNAL, INVALID, OsctlError

from ..undo import Undo
from .qmp import Qmp, QmpError

log = logging.getLogger(__name__)

DISK_NODE = "disk0"  # the block node of a VM's disk (runtime/vm.py's command line)
EXPORT = DISK_NODE  # the NBD export's id and name
JOB = "migrate-disk"
# How often the source's jobs are looked at, and (FAST_POLL) what decides
# the guest's pause: the end of the migration, at both ends.
POLL = 0.1
FAST_POLL = 0.01
# QEMU's own default bandwidth (128 MiB/s) is too low for a LAN and does not
# apply to the mirror; migration may use what the link gives.
MAX_BANDWIDTH = 16 << 30
# Migration states in which the source is still sending.
SENDING = ("setup", "active", "pre-switchover", "device", "wait-unplug")
# Run states in which the migration has paused the source.
PAUSED_BY_MIGRATION = ("postmigrate", "finish-migrate", "inmigrate")

Progress = Callable[[dict], None]


@dataclass(frozen=True)
class Endpoints:
    """Where the destination listens: the RAM stream's URI (``migrate``'s)
    and the disk's NBD URI (``drive-mirror``'s target)."""

    migrate: str
    nbd: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: object) -> "Endpoints":
        if not isinstance(d, dict) or not {"migrate", "nbd"} <= d.keys():
            raise OsctlError(INVALID, f"not migration endpoints: {d!r}")
        ends = cls(str(d["migrate"]), str(d["nbd"]))
        if not (ends.migrate.startswith(("tcp:", "unix:")) and ends.nbd.startswith("nbd")):
            raise OsctlError(INVALID, f"not migration endpoints: {d!r}")
        return ends


@dataclass(frozen=True)
class Tuning:
    """The node's migration settings: the longest pause of the guest QEMU
    may plan for at the switch-over (ms) and the bandwidth it may use."""

    downtime_limit: int = 300
    max_bandwidth: int = MAX_BANDWIDTH


class Target(Protocol):
    """The destination as the source sees it."""

    async def prepare(self) -> Endpoints:
        """Its QEMU started, listening for the RAM stream and the disk."""
        ...

    async def resume(self) -> None:
        """Wait for the guest (the migration completed, the source's mirror
        gone from the export), stop the disk export and run it. Called as
        the RAM migration starts, so that its round trip is not part of the
        guest's pause; cancelled if the source gives up."""
        ...

    async def abort(self) -> bool:
        """Remove its QEMU and whatever was made for it; safe at any point.
        False if it cannot: the guest runs there already."""
        ...


# --- the destination ------------------------------------------------------------------


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ipaddress.ip_address(host).version == 6 else f"{host}:{port}"


async def listen(qmp: Qmp, host: str) -> Endpoints:
    """Make the incoming QEMU listen on ``host`` (the node's own address) for
    the RAM stream and, through an NBD export of its disk, for the mirror;
    the ports are the kernel's choice, nothing else is opened."""
    await qmp.execute("migrate-incoming", {"uri": f"tcp:{_host_port(host, 0)}"})
    listening = (await qmp.execute("query-migrate")).get("socket-address") or []
    ports = [a["port"] for a in listening if a.get("type") == "inet"]
    if not ports:
        raise OsctlError(INTERNAL, f"QEMU does not say where it listens: {listening!r}")
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as nbd:
        nbd.bind((host, 0))
        nbd.listen(4)
        await qmp.execute("getfd", {"fdname": "nbd"}, fds=[nbd.fileno()])
        await qmp.execute("nbd-server-start", {"addr": {"type": "fd", "data": {"str": "nbd"}}})
        nbd_port = nbd.getsockname()[1]
    await qmp.execute("block-export-add", {"type": "nbd", "id": EXPORT, "node-name": DISK_NODE,
                                           "name": EXPORT, "writable": True})
    return Endpoints(migrate=f"tcp:{_host_port(host, int(ports[0]))}",
                     nbd=f"nbd://{_host_port(host, nbd_port)}/{EXPORT}")


async def landed(qmp: Qmp) -> None:
    """Wait until the guest is all here: the RAM arrived (the incoming
    migration completed) and the source's mirror let go of the export (a
    ``safe`` delete is refused while it is connected); then stop the NBD
    server, whose writer would conflict with the guest's. The caller runs
    it (``cont``)."""
    while True:
        status = (await qmp.execute("query-migrate")).get("status")
        if status == "completed":
            break
        if status in ("failed", "cancelled"):
            raise OsctlError(INTERNAL, f"the incoming migration {status}")
        await asyncio.sleep(FAST_POLL)
    while True:
        try:
            await qmp.execute("block-export-del", {"id": EXPORT, "mode": "safe"})
            break
        except QmpError as e:
            if "in use" not in e.message:
                raise
        await asyncio.sleep(FAST_POLL)
    await qmp.execute("nbd-server-stop")


# --- the source ---------------------------------------------------------------------------


def _rounds(seconds: float) -> Iterator[None]:
    """Polling rounds for up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        yield


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


async def _job(qmp: Qmp) -> dict | None:
    return next((j for j in await qmp.execute("query-block-jobs") if j.get("device") == JOB), None)


async def mirror(qmp: Qmp, ends: Endpoints, progress: Progress) -> None:
    """Mirror the disk into the destination's export until the job is
    ready; from then on each guest write reaches both disks."""
    await qmp.execute("drive-mirror", {
        "job-id": JOB, "device": DISK_NODE, "target": ends.nbd, "format": "raw",
        "mode": "existing", "sync": "full", "copy-mode": "write-blocking",
        "auto-dismiss": False})
    t0 = time.monotonic()
    while True:
        job = await _job(qmp)
        if job is None or job.get("status") == "concluded":
            why = (job or {}).get("error", "it ended")
            raise OsctlError(INTERNAL, f"mirroring the disk failed: {why}")
        done, total = job.get("offset", 0), job.get("len", 0)
        progress({"step": "disk", "bytes": done, "total": total,
                  "rate": int(done / max(time.monotonic() - t0, 1e-3)),
                  "message": f"disk {_mib(done)} of {_mib(total)}"})
        if job.get("ready"):
            return
        await asyncio.sleep(POLL)


async def migrate_ram(qmp: Qmp, ends: Endpoints, tuning: Tuning, progress: Progress) -> dict:
    """Send the RAM and the devices; returns QEMU's figures once it completed
    (the source is paused then)."""
    await qmp.execute("migrate-set-capabilities", {"capabilities": [
        {"capability": "events", "state": True},
        {"capability": "auto-converge", "state": True}]})
    await qmp.execute("migrate-set-parameters", {"downtime-limit": tuning.downtime_limit,
                                                 "max-bandwidth": tuning.max_bandwidth})
    await qmp.execute("migrate", {"uri": ends.migrate})
    while True:
        info = await qmp.execute("query-migrate")
        status = info.get("status")
        ram = info.get("ram", {})
        if status == "completed":
            return {"downtime_ms": info.get("downtime"), "total_ms": info.get("total-time"),
                    "bytes": ram.get("transferred", 0)}
        if status not in SENDING:
            raise OsctlError(INTERNAL, f"the migration is {status}: "
                                       f"{info.get('error-desc', 'no reason given')}")
        sent, rate = ram.get("transferred", 0), int(ram.get("mbps", 0) * 1e6 / 8)
        progress({"step": "ram", "bytes": sent, "total": ram.get("total", 0), "rate": rate,
                  "message": f"RAM {_mib(sent)} sent, {_mib(ram.get('remaining', 0))} left"})
        await asyncio.sleep(FAST_POLL)


async def release_disk(qmp: Qmp) -> None:
    """End the ready mirror job: on a ready job a cancel is a clean
    completion (the target is left in sync), and the source lets go of the
    destination's export."""
    await qmp.execute("block-job-cancel", {"device": JOB})
    for _ in _rounds(30):
        job = await _job(qmp)
        if job is None:
            return
        if job.get("status") == "concluded":
            await qmp.execute("job-dismiss", {"id": JOB})
            if job.get("error"):
                raise OsctlError(INTERNAL, f"the disk mirror ended with an error: {job['error']}")
            return
        await asyncio.sleep(FAST_POLL)
    raise OsctlError(INTERNAL, "the disk mirror did not end within 30 s")


async def _quietly(qmp: Qmp, cmd: str, args: dict | None = None) -> None:
    try:
        await qmp.execute(cmd, args)
    except QmpError as e:
        log.info("rollback: QMP %s: %s", cmd, e)


async def stay(qmp: Qmp) -> None:
    """Undo the source's part: the migration cancelled and the guest running
    again if the migration paused it, the mirror job gone."""
    await _quietly(qmp, "migrate_cancel")
    for _ in _rounds(10):  # a cancel is seen in query-migrate when it is done
        try:
            status = (await qmp.execute("query-migrate")).get("status")
        except QmpError:
            break
        if status not in ("cancelling", *SENDING):
            break
        await asyncio.sleep(POLL)
    try:
        run_state = (await qmp.execute("query-status")).get("status")
    except QmpError:
        run_state = None
    if run_state in PAUSED_BY_MIGRATION:
        await _quietly(qmp, "cont")
    try:
        job = await _job(qmp)
    except QmpError:
        return
    if job is not None:
        if job.get("status") != "concluded":
            await _quietly(qmp, "block-job-cancel", {"device": JOB, "force": True})
            for _ in _rounds(10):
                job = await _job(qmp)
                if job is None or job.get("status") == "concluded":
                    break
                await asyncio.sleep(POLL)
        await _quietly(qmp, "job-dismiss", {"id": JOB})


async def _cancel(task: asyncio.Future) -> None:
    task.cancel()
    await asyncio.wait([task])


async def send(qmp: Qmp, target: Target, tuning: Tuning,
               progress: Progress = lambda data: None,
               handover: Callable[[bool], Awaitable[None]] | None = None) -> dict:
    """Move the running guest of ``qmp`` to ``target``. On success the
    guest runs there and the source QEMU is paused, its disk in sync, for
    the caller to quit; returns QEMU's figures (downtime_ms, total_ms,
    bytes). ``handover(False)`` runs once the source is paused for good
    (the caller's routes go; ``handover(True)`` brings them back on a
    failure after it). On failure or cancellation the target is aborted
    and the source runs on, then the error goes on; unless the target
    says the guest runs there already (the last reply was lost): then it
    moved, and the source must not run it again."""
    arrived, handed_over = False, False

    async def drop_target() -> None:
        nonlocal arrived
        arrived = not await target.abort()

    async def stay_here() -> None:
        if arrived:
            return
        await stay(qmp)
        if handed_over and handover is not None:
            await handover(True)

    figures: dict = {}
    try:
        async with Undo() as undo:
            undo.push(stay_here)  # runs after drop_target, which tells whether it may
            undo.push(drop_target)
            progress({"step": "prepare", "message": "starting the destination QEMU"})
            ends = await target.prepare()
            await mirror(qmp, ends, progress)
            progress({"step": "ram", "message": "disk in sync; migrating the RAM"})
            resumed = asyncio.ensure_future(target.resume())
            undo.push(_cancel, resumed)
            figures = await migrate_ram(qmp, ends, tuning, progress)
            if handover is not None:
                handed_over = True
                await handover(False)
            await release_disk(qmp)
            progress({"step": "resume", "message": "resuming on the destination"})
            await resumed
    except BaseException as e:
        if not arrived:
            raise
        log.warning("the destination runs the guest although its last reply failed (%s): "
                    "it moved", e or type(e).__name__)
    return figures
