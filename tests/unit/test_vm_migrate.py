"""The decisions of the live migration sequence (runtime/vm_migrate.py), against
a scripted QMP: which commands go to the source in which order, and what is
undone after a failure at each step. The real QEMUs are in
tests/integration/test_vm_migrate.py."""

from __future__ import annotations

import asyncio

import pytest

from osctl.protocol import OsctlError
from osctld.runtime import vm_migrate
from osctld.runtime.qmp import QmpError

ENDS = vm_migrate.Endpoints("tcp:198.51.100.2:40000", "nbd://198.51.100.2:40001/disk0")


class FakeSource:
    """A source QEMU as QMP shows it: a mirror job that gets ready, a migration
    that completes, the run state they leave; ``fail`` makes one command fail,
    ``migration_ends`` is the status the migration reaches."""

    def __init__(self, fail: str | None = None, migration_ends: str = "completed"):
        self.fail, self.migration_ends = fail, migration_ends
        self.sent: list[str] = []
        self.args: dict[str, dict] = {}
        self.job: dict | None = None
        self.migration = "none"
        self.run_state = "running"

    async def execute(self, cmd: str, arguments: dict | None = None, **_) -> object:
        self.sent.append(cmd)
        self.args[cmd] = arguments or {}
        if cmd == self.fail:
            raise QmpError(f"QMP {cmd}: injected")
        if cmd == "drive-mirror":
            self.job = {"device": arguments["job-id"], "status": "running", "ready": False,
                        "offset": 0, "len": 100}
        elif cmd == "query-block-jobs":
            if self.job and self.job["status"] == "running":
                self.job.update(offset=100, ready=True, status="ready")
            return [dict(self.job)] if self.job else []
        elif cmd == "block-job-cancel":
            self.job["status"] = "concluded"
        elif cmd == "job-dismiss":
            self.job = None
        elif cmd == "migrate":
            self.migration = "active"
        elif cmd == "query-migrate":
            if self.migration == "active":
                self.migration = self.migration_ends
                if self.migration == "completed":
                    self.run_state = "postmigrate"
                return {"status": "active", "ram": {"transferred": 10, "total": 20, "mbps": 8.0}}
            return {"status": self.migration, "downtime": 12, "total-time": 80,
                    "ram": {"transferred": 20}, "error-desc": "link down"}
        elif cmd == "migrate_cancel":
            if self.migration == "active":
                self.migration = "cancelled"
        elif cmd == "query-status":
            return {"status": self.run_state}
        elif cmd == "cont":
            self.run_state = "running"
        return {}


class FakeTarget:
    """The destination: its resume waits, as ``landed`` does, for the
    migration to complete and the source's mirror to be gone."""

    def __init__(self, src: FakeSource, fail: str | None = None):
        self.src, self.fail = src, fail
        self.calls: list[str] = []

    async def _step(self, name: str):
        self.calls.append(name)
        if name == self.fail:
            raise OsctlError("internal", f"destination: {name} injected")

    async def prepare(self) -> vm_migrate.Endpoints:
        await self._step("prepare")
        return ENDS

    async def resume(self) -> None:
        self.calls.append("waits")
        try:
            while not (self.src.migration == "completed" and self.src.job is None):
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            self.calls.append("cancelled")
            raise
        await self._step("resume")

    async def abort(self) -> bool:
        self.calls.append("abort")
        return not self.arrived

    arrived = False  # the guest runs there although the last step failed


def run(src: FakeSource, target: FakeTarget, progress=lambda data: None, handover=None) -> dict:
    return asyncio.run(vm_migrate.send(src, target, vm_migrate.Tuning(downtime_limit=250),
                                       progress, handover))


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setattr(vm_migrate, "POLL", 0)
    monkeypatch.setattr(vm_migrate, "FAST_POLL", 0)


def test_the_sequence_in_order():
    src = FakeSource()
    target = FakeTarget(src)
    steps: list[str] = []
    routed: list[tuple[bool, str]] = []

    async def handover(on: bool) -> None:
        routed.append((on, src.run_state))

    figures = run(src, target, lambda data: steps.append(data["step"]), handover)
    assert figures == {"downtime_ms": 12, "total_ms": 80, "bytes": 20}
    # The destination was asked to resume before the RAM went, and did once it was all there.
    assert target.calls == ["prepare", "waits", "resume"]
    assert src.sent.index("migrate") > src.sent.index("drive-mirror")
    # The routes went once the source was paused for good, and stayed away.
    assert routed == [(False, "postmigrate")]
    order = [c for c in src.sent if not c.startswith("query-")]
    assert order == ["drive-mirror", "migrate-set-capabilities", "migrate-set-parameters",
                     "migrate", "block-job-cancel", "job-dismiss"]
    mirror = src.args["drive-mirror"]
    assert (mirror["target"], mirror["copy-mode"], mirror["sync"], mirror["mode"]) == \
        (ENDS.nbd, "write-blocking", "full", "existing")
    assert src.args["migrate-set-parameters"]["downtime-limit"] == 250
    assert src.args["migrate"] == {"uri": ENDS.migrate}
    # The source is left paused for the caller to quit; nothing was undone.
    assert src.run_state == "postmigrate" and "migrate_cancel" not in src.sent
    assert steps[0] == "prepare" and steps[-1] == "resume" and "disk" in steps


@pytest.mark.parametrize("fail", ["drive-mirror", "migrate-set-parameters", "migrate"])
def test_a_source_step_failing_undoes_everything(fail):
    src = FakeSource(fail=fail)
    target = FakeTarget(src)
    with pytest.raises(QmpError, match="injected"):
        run(src, target)
    waited = [] if fail == "drive-mirror" else ["waits", "cancelled"]
    assert target.calls == ["prepare", *waited, "abort"]
    assert src.run_state == "running" and "cont" not in src.sent
    assert src.job is None  # cancelled and dismissed, or never made
    assert src.sent.index("migrate_cancel") > src.sent.index(fail)


def test_a_failed_migration_is_cancelled_and_the_mirror_with_it():
    src = FakeSource(migration_ends="failed")
    target = FakeTarget(src)
    with pytest.raises(OsctlError, match="failed: link down"):
        run(src, target)
    assert src.args["block-job-cancel"] == {"device": vm_migrate.JOB, "force": True}
    assert src.job is None and target.calls == ["prepare", "waits", "cancelled", "abort"]
    assert src.run_state == "running"


def test_the_destination_failing_to_resume_resumes_the_source():
    """The migration completed and paused the source: a destination that
    cannot run the guest means the source runs it again."""
    src = FakeSource()
    target = FakeTarget(src, fail="resume")
    routed: list[bool] = []

    async def handover(on: bool) -> None:
        routed.append(on)

    with pytest.raises(OsctlError, match="resume injected"):
        run(src, target, handover=handover)
    assert target.calls == ["prepare", "waits", "resume", "abort"]
    assert "cont" in src.sent and src.run_state == "running"
    assert routed == [False, True]  # routed here again


def test_a_destination_failing_to_prepare_is_aborted_and_the_source_untouched():
    src = FakeSource()
    target = FakeTarget(src, fail="prepare")
    with pytest.raises(OsctlError, match="prepare injected"):
        run(src, target)
    assert target.calls == ["prepare", "abort"] and src.run_state == "running"
    assert not {"drive-mirror", "migrate", "cont"} & set(src.sent)


def test_a_cancel_midway_rolls_back():
    src = FakeSource()
    target = FakeTarget(src)

    def cancel_at_ram(data: dict) -> None:
        if data["step"] == "ram" and "bytes" in data:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        run(src, target, cancel_at_ram)
    assert target.calls == ["prepare", "waits", "cancelled", "abort"]
    assert "migrate_cancel" in src.sent and src.run_state == "running" and src.job is None


def test_endpoints_from_the_wire():
    assert vm_migrate.Endpoints.from_dict(ENDS.to_dict()) == ENDS
    for bad in ({}, {"migrate": "exec:rm -rf /", "nbd": ENDS.nbd},
                {"migrate": ENDS.migrate, "nbd": "file:/etc/shadow"}, None):
        with pytest.raises(OsctlError) as e:
            vm_migrate.Endpoints.from_dict(bad)
        assert e.value.code == "invalid"
    assert vm_migrate._host_port("2001:db8::2", 5) == "[2001:db8::2]:5"


def test_a_lost_last_reply_from_a_destination_that_runs_it_is_a_move():
    """The destination resumed the guest but its reply did not come: it
    says so when told to abort, and the source must not run it again."""
    src = FakeSource()
    target = FakeTarget(src, fail="resume")
    target.arrived = True
    routed: list[bool] = []

    async def handover(on: bool) -> None:
        routed.append(on)

    assert run(src, target, handover=handover)["downtime_ms"] == 12
    assert target.calls == ["prepare", "waits", "resume", "abort"]
    assert src.run_state == "postmigrate" and "cont" not in src.sent and routed == [False]
