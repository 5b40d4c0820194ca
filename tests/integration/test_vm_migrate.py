"""Live migration's QMP sequence (runtime/vm_migrate.py) between two real
QEMUs on this machine, under tcg, over loopback: the tiny test VM moves
while its shell writes a counter to its disk, and failures on the way leave
it running where it was. No daemon: the QEMUs are started here, on the
command line the daemon would give them."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from osctld.config import VmPolicy
from osctld.model.vm import VM
from osctld.runtime import vm_migrate
from osctld.runtime.qmp import Qmp
from osctld.runtime.vm import VmRunPaths, qemu_argv
from osctld.runtime.vmimage import VmFiles
from tests.conftest import missing_capability, require
from tests.helpers.vm import (COUNTER, counted, disk_counter, have_qemu, type_on_console)
from tests.helpers.wait import wait_for

MIB = 1 << 20


class BareQemu:
    """A QEMU of the tiny VM in a directory of its own (files and run paths)."""

    def __init__(self, where: Path, image: Path, disk_size: int = 64 * MIB):
        self.files, self.paths = VmFiles(where / "files"), VmRunPaths(where / "run")
        self.files.dir.mkdir(parents=True)
        self.paths.dir.mkdir(parents=True)
        for name in ("vmlinuz", "initrd.img", "cmdline"):
            (self.files.dir / name).symlink_to(image / name)
        with open(self.files.disk, "wb") as f:
            f.truncate(disk_size)
        self.vm = VM(id="m1", pool="default", user="u", template="tinyvm", version="1",
                     cores=1, memory=256 * MIB, disk=disk_size)
        self.qmp: Qmp | None = None

    def start(self, *extra: str) -> None:
        subprocess.run([*qemu_argv(VmPolicy(accelerator="tcg"), self.vm, self.files, self.paths),
                        *extra], check=True)

    @property
    def pid(self) -> int | None:
        try:
            pid = int(self.paths.pidfile.read_text())
            return pid if str(self.paths.qmp).encode() in Path(f"/proc/{pid}/cmdline").read_bytes() \
                else None
        except (OSError, ValueError):
            return None

    def console(self) -> bytes:
        return self.paths.console_log.read_bytes() if self.paths.console_log.exists() else b""

    def kill(self) -> None:
        if self.pid:
            os.kill(self.pid, signal.SIGKILL)
            wait_for(lambda: self.pid is None, 10, 0.05, "QEMU to die")


class BareTarget:
    """The destination, here: what the receive verbs do on another node."""

    def __init__(self, qemu: BareQemu, fail_resume: bool = False):
        self.qemu, self.fail_resume = qemu, fail_resume
        self.aborted = False

    async def prepare(self) -> vm_migrate.Endpoints:
        await asyncio.to_thread(self.qemu.start, "-incoming", "defer", "-S")
        self.qemu.qmp = await Qmp.connect(str(self.qemu.paths.qmp))
        return await vm_migrate.listen(self.qemu.qmp, "127.0.0.1")

    async def resume(self) -> None:
        await vm_migrate.landed(self.qemu.qmp)
        if self.fail_resume:  # a bad argument to the last step
            await self.qemu.qmp.execute("block-export-del", {"id": "no-such-export"})
        await self.qemu.qmp.execute("cont")

    async def abort(self) -> bool:
        self.aborted = True
        if self.qemu.qmp:
            self.qemu.qmp.close()
        self.qemu.kill()
        shutil.rmtree(self.qemu.files.dir.parent)
        return True


@pytest.fixture
def pair(tinyvm_image, tmp_path):
    require(missing_capability() or have_qemu())
    src, dst = BareQemu(tmp_path / "a", tinyvm_image), BareQemu(tmp_path / "b", tinyvm_image)
    try:
        src.start()
        wait_for(lambda: b"/ # " in src.console(), 60, 0.2, "the tiny VM's shell")
        type_on_console(src.paths.console, COUNTER)
        wait_for(lambda: len(counted(src.console())) >= 10, 30, 0.2, "the guest's counter")
        yield src, dst
    finally:
        src.kill()
        dst.kill()


async def _send(src: BareQemu, target: BareTarget, progress=lambda data: None) -> dict:
    qmp = await Qmp.connect(str(src.paths.qmp))
    try:
        return await vm_migrate.send(qmp, target, vm_migrate.Tuning(downtime_limit=300), progress)
    finally:
        qmp.close()
        if target.qemu.qmp:  # QEMU takes one QMP client at a time
            target.qemu.qmp.close()
            target.qemu.qmp = None


async def _qmp(qemu: BareQemu, cmd: str):
    qmp = await Qmp.connect(str(qemu.paths.qmp))
    try:
        return await qmp.execute(cmd)
    finally:
        qmp.close()


def _status(qemu: BareQemu) -> str:
    return asyncio.run(_qmp(qemu, "query-status"))["status"]


def test_the_counter_goes_on_at_the_destination(pair):
    src, dst = pair
    seen: list[str] = []
    figures = asyncio.run(_send(src, BareTarget(dst), lambda data: seen.append(data["step"])))
    assert {"prepare", "disk", "ram", "resume"} <= set(seen)
    assert figures["downtime_ms"] is not None and figures["bytes"] > 0
    # The source is paused, its disk in sync; the destination runs the guest.
    assert _status(src) == "postmigrate"
    src.kill()
    before = counted(src.console())
    wait_for(lambda: counted(dst.console()), 30, 0.2, "the counter on the destination",
             until=lambda after: len(after) >= 10)
    asyncio.run(_qmp(dst, "stop"))
    # The console goes on where it stopped (a serial console may drop a
    # line under load, so it only witnesses the order) ...
    numbers = counted(src.console(), dst.console())
    assert numbers == sorted(set(numbers)) and numbers[-1] > before[-1] + 5
    # ... and the disk holds every value written, on both sides of the switch, in its slot.
    on_disk = disk_counter(dst.files.disk)
    assert on_disk == list(range(1, len(on_disk) + 1)) and on_disk[-1] >= numbers[-1]
    # What the source wrote before it stopped is byte for byte on the destination.
    with open(src.files.disk, "rb") as a, open(dst.files.disk, "rb") as b:
        assert a.read()[:512 * (before[-1] + 1)] == b.read()[:512 * (before[-1] + 1)]


def test_a_failed_last_step_leaves_it_running_at_the_source(pair):
    src, dst = pair
    target = BareTarget(dst, fail_resume=True)
    with pytest.raises(Exception, match="no-such-export"):
        asyncio.run(_send(src, target))
    _runs_on_at_the_source(src, dst, target)


def test_a_destination_killed_midway_leaves_it_running_at_the_source(pair):
    src, dst = pair
    target = BareTarget(dst)

    def kill_at_ram(data: dict) -> None:
        if data["step"] == "ram" and dst.pid:
            dst.kill()

    with pytest.raises(Exception):
        asyncio.run(_send(src, target, kill_at_ram))
    _runs_on_at_the_source(src, dst, target)


def _runs_on_at_the_source(src: BareQemu, dst: BareQemu, target: BareTarget) -> None:
    assert target.aborted and dst.pid is None and not dst.files.dir.exists()
    assert _status(src) == "running"
    n = len(counted(src.console()))
    wait_for(lambda: len(counted(src.console())), 30, 0.2, "the counter to go on at the source",
             until=lambda m: m > n + 5)
    # No job or migration is left behind: a second migration would start afresh.
    assert asyncio.run(_qmp(src, "query-block-jobs")) == []
