"""The send log's state machine, without I/O: steps in, stages out, steps
that may not come now refused (as h11's tests go)."""

from __future__ import annotations

import pytest

from osctl.protocol import CONFLICT, OsctlError
from osctld.model.container import Container
from osctld.model.lifecycle import State
from osctld.model.sendlog import DESTINATION, SOURCE, SendLog, Stage, Step, held_state, next_stage


def log(role: str = SOURCE, stage: Stage = Stage.CONFIG, **kw) -> SendLog:
    return SendLog(role=role, token="t" * 40, stage=stage, peer="198.51.100.11", as_id="c1",
                   pool="default", stream="btrfs", **kw)


def run(role: str, steps: list[Step]) -> Stage | None:
    stage = None
    for step in steps:
        stage = next_stage(role, stage, step)
    return stage


def test_a_whole_transfer_on_both_ends():
    steps = [Step.CONFIG, Step.ROOTFS, Step.SYNC, Step.SYNC, Step.STATE]
    assert run(SOURCE, steps) == Stage.STATE
    assert run(SOURCE, [*steps, Step.CLEANUP]) is None
    assert run(DESTINATION, steps) is None  # it holds the container from state on
    assert run(SOURCE, [Step.CONFIG, Step.ROOTFS, Step.STATE]) == Stage.STATE  # sync may be left out


@pytest.mark.parametrize("steps", [
    [Step.ROOTFS], [Step.CONFIG, Step.CONFIG], [Step.CONFIG, Step.SYNC], [Step.CONFIG, Step.STATE],
    [Step.CONFIG, Step.CLEANUP], [Step.CONFIG, Step.ROOTFS, Step.ROOTFS],
    [Step.CONFIG, Step.ROOTFS, Step.STATE, Step.CANCEL], [Step.CONFIG, Step.ROOTFS, Step.STATE, Step.SYNC],
    [Step.CANCEL], [Step.CLEANUP],
])
def test_steps_out_of_order_are_refused(steps):
    with pytest.raises(OsctlError) as e:
        run(SOURCE, steps)
    assert e.value.code == CONFLICT


def test_cancel_ends_a_transfer_before_state_only():
    for done in ([Step.CONFIG], [Step.CONFIG, Step.ROOTFS], [Step.CONFIG, Step.ROOTFS, Step.SYNC]):
        assert run(SOURCE, [*done, Step.CANCEL]) is None
        assert run(DESTINATION, [*done, Step.CANCEL]) is None
    with pytest.raises(OsctlError, match="cancel comes before state"):
        run(SOURCE, [Step.CONFIG, Step.ROOTFS, Step.STATE, Step.CANCEL])
    with pytest.raises(OsctlError, match="not being sent: begin with ct send config"):
        run(SOURCE, [Step.CANCEL])


def test_after_keeps_what_it_is_given_and_ends_with_none():
    a = log().after(Step.ROOTFS, snapshot="s1")
    assert a is not None and (a.stage, a.snapshot) == (Stage.ROOTFS, "s1")
    assert a.after(Step.SYNC, snapshot="s2").snapshot == "s2"
    assert log(stage=Stage.STATE).after(Step.CLEANUP) is None


def test_the_log_is_kept_in_the_config_and_holds_the_state():
    for role, stage, clone, held in ((DESTINATION, Stage.ROOTFS, False, State.STAGED),
                                     (SOURCE, Stage.SYNC, False, State.STOPPED),
                                     (SOURCE, Stage.STATE, False, State.MIGRATING),
                                     (SOURCE, Stage.STATE, True, State.STOPPED)):
        ct = Container(id="c1", pool="p", user="u", distribution="debian", version="12",
                       send_log=log(role, stage, clone=clone))
        back = Container.from_dict(ct.to_dict(), "p")
        assert back.send_log == ct.send_log and back.state == held
        assert held_state(ct.send_log, State.STOPPED) == held
    assert Container.from_dict({**ct.to_dict(), "send_log": None}, "p").send_log is None


def test_a_vms_replica_log_is_kept_in_its_config_and_holds_it_staged_there():
    from osctld.model.vm import VM
    for role, held in ((DESTINATION, State.STAGED), (SOURCE, State.STOPPED)):
        vm = VM(id="v1", pool="p", user="u", template="tinyvm", version="1", cores=1,
                memory=256 << 20, disk=10 << 30, send_log=log(role, Stage.SYNC, replica=True))
        back = VM.from_dict(vm.to_dict(), "p")
        assert back.send_log == vm.send_log and back.state == held
    assert VM.from_dict({k: v for k, v in vm.to_dict().items() if k != "send_log"},
                        "p").send_log is None  # a config from before replicas
