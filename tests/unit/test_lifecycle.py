"""The lifecycle table, driven without LXC or QEMU: every transition it holds,
every event it refuses (a conflict naming the instance, its state and the
event), and the runtimes publishing a state change once."""

import asyncio
import json

import pytest

from osctl.protocol import CONFLICT, OsctlError
from osctld.model.container import Container
from osctld.model.lifecycle import TABLE, Event, State, check
from osctld.model.vm import VM
from osctld.runtime.container import Containers
from osctld.runtime.vm import Vms

S, E = State, Event
LIVE = {S.STARTING, S.RUNNING, S.STOPPING, S.FROZEN}
# The whole table, written out once more: a change to it must be meant.
VALID = {
    (E.START, S.STOPPED): S.STARTING,
    (E.STARTED, S.STOPPED): S.RUNNING,
    (E.STARTED, S.STARTING): S.RUNNING,
    (E.STARTED, S.RUNNING): S.RUNNING,
    (E.STARTED, S.STOPPING): S.RUNNING,
    (E.FAIL, S.STARTING): S.STOPPED,
    (E.FAIL, S.RUNNING): S.STOPPED,
    (E.FAIL, S.STOPPED): S.STOPPED,
    **{(E.STOP, s): S.STOPPING for s in LIVE},
    **{(E.STOPPED, s): S.STOPPED for s in LIVE | {S.STOPPED}},
    **{(E.REBOOT, s): S.STARTING for s in LIVE},
    (E.STAGE, S.STOPPED): S.STAGED,
    (E.ADOPT, S.STAGED): S.STOPPED,
    (E.MIGRATE, S.STOPPED): S.MIGRATING,
    (E.STAY, S.MIGRATING): S.STOPPED,
    (E.SOFT_DELETE, S.STOPPED): S.SOFT_DELETED,
    (E.RESTORE, S.SOFT_DELETED): S.STOPPED,
    (E.MIGRATE_LIVE, S.RUNNING): S.MIGRATING,
    (E.RESUME, S.MIGRATING): S.RUNNING,
    (E.ARRIVE, S.STAGED): S.RUNNING,
    **{(E.EXITED, s): S.STOPPED for s in LIVE | {S.STOPPED, S.MIGRATING}},
    (E.EXITED, S.STAGED): S.STAGED,
}
INVALID = [(e, s) for e in Event for s in State if (e, s) not in VALID]


def test_table_is_as_written():
    held = {(e, s): t for e, row in TABLE.items() for s, t in row.items()}
    assert held == VALID


@pytest.mark.parametrize(("event", "state"), sorted(VALID))
def test_valid_transition(event, state):
    assert check("container c1", state, event) is VALID[(event, state)]


@pytest.mark.parametrize(("event", "state"), sorted(INVALID))
def test_invalid_event_is_a_conflict(event, state):
    with pytest.raises(OsctlError) as e:
        check("container c1", state, event)
    assert e.value.code == CONFLICT
    assert e.value.message == f"container c1 is {state}: cannot {event}"


@pytest.mark.parametrize("state", [S.RUNNING, S.FROZEN, S.STARTING, S.STOPPING,
                                   S.STAGED, S.SOFT_DELETED, S.MIGRATING])
def test_only_a_stopped_instance_starts(state):
    with pytest.raises(OsctlError, match=f"VM v1 is {state}: cannot start"):
        check("VM v1", state, E.START)


@pytest.mark.parametrize("event", [E.START, E.STOP, E.SOFT_DELETE, E.MIGRATE, E.STAGE])
def test_migrating_refuses(event):
    with pytest.raises(OsctlError, match="is migrating"):
        check("container c1", S.MIGRATING, event)


def test_states_read_as_today():
    """A StrEnum: plain strings in messages, JSON and comparisons."""
    assert f"{S.SOFT_DELETED}" == "soft-deleted" and S.RUNNING == "running"
    assert json.dumps({"state": S.STAGED}) == '{"state": "staged"}'
    assert S("frozen") is S.FROZEN


def _containers(seen):
    return Containers(lxc=None, templates=None, hooks=None, cgroups=None, net=None,
                      on_state=seen.append, nodes=None, lxcfs=None, statfs=None,
                      exit_codes=None)


def test_container_runtime_publishes_each_change_once():
    seen = []
    cts = _containers(seen)
    ct = Container(id="c1", pool="p", user="u", distribution="busybox", version="1")
    cts.apply(ct, E.START)
    cts.apply(ct, E.STARTED, 42)
    cts.apply(ct, E.STARTED, 42)  # the same again: nothing changed
    assert (ct.state, ct.init_pid) == (S.RUNNING, 42) and len(seen) == 2
    with pytest.raises(OsctlError, match="container c1 is running: cannot start"):
        cts.apply(ct, E.START)
    assert ct.state == S.RUNNING and len(seen) == 2
    cts.apply(ct, E.REBOOT)  # a reboot from inside: post-stop says so
    assert (ct.state, ct.init_pid) == (S.STARTING, None) and len(seen) == 3


def test_observed_is_taken_from_any_state():
    """Re-adoption and refresh record what LXC says, whatever the table says."""
    seen = []
    cts = _containers(seen)
    ct = Container(id="c1", pool="p", user="u", distribution="busybox", version="1")
    ct.state = S.MIGRATING
    cts.observed(ct, S.RUNNING, 7)
    assert (ct.state, ct.init_pid, len(seen)) == (S.RUNNING, 7, 1)


def _vm() -> VM:
    return VM(id="v1", pool="p", user="u", template="debian", version="12", cores=1,
              memory=1 << 30, disk=1 << 30)


def test_vm_runtime_failed_start_returns_to_stopped(tmp_path):
    seen = []
    vms = Vms(policy=None, run_dir=tmp_path, cgroups=None, net=None, on_state=seen.append)
    vm = _vm()
    vms.apply(vm, E.START)
    vms.apply(vm, E.FAIL)
    assert vm.state == S.STOPPED and len(seen) == 2
    with pytest.raises(OsctlError, match="VM v1 is stopped: cannot stop"):
        vms.apply(vm, E.STOP)


def test_vm_live_migration_states(tmp_path):
    """The source: running, migrating, then its QEMU quits (stopped, and it
    is deleted) or the migration fails (running on). The destination: staged
    while its incoming QEMU waits (a death of it leaves it staged), running
    once the guest resumed there."""
    seen = []
    vms = Vms(policy=None, run_dir=tmp_path, cgroups=None, net=None, on_state=seen.append)
    src = _vm()
    src.state = S.RUNNING
    vms.apply(src, E.MIGRATE_LIVE)
    for event in (E.START, E.STOP, E.MIGRATE_LIVE):
        with pytest.raises(OsctlError, match="VM v1 is migrating"):
            vms.apply(src, event)
    vms.apply(src, E.RESUME)
    vms.apply(src, E.MIGRATE_LIVE)
    vms.apply(src, E.EXITED)
    assert src.state == S.STOPPED and len(seen) == 4
    dst = _vm()
    states = []
    for event in (E.STAGE, E.EXITED, E.ARRIVE):
        vms.apply(dst, event, 9)
        states.append(dst.state)
    assert states == [S.STAGED, S.STAGED, S.RUNNING] and dst.pid == 9 and len(seen) == 6
    assert check("VM v1", S.STAGED, E.ARRIVE) is S.RUNNING


@pytest.mark.parametrize("state", [S.STAGED, S.SOFT_DELETED, S.MIGRATING, S.RUNNING])
def test_container_start_is_refused_before_it_prepares(state):
    seen, prepared = [], []
    cts = _containers(seen)

    async def prepare(pstate, ct):
        prepared.append(ct)
    cts.write_netconfig = prepare  # the first thing a start prepares
    ct = Container(id="c1", pool="p", user="u", distribution="busybox", version="1")
    ct.state = state
    with pytest.raises(OsctlError, match=f"container c1 is {state}: cannot start"):
        asyncio.run(cts.start(None, ct))
    assert prepared == [] and seen == [] and ct.state == state


def _startable(hook_error: str | None):
    """A container runtime whose LXC start runs the start-host hook as
    lxc-start does, and fails as it does when the hook refuses."""
    from types import SimpleNamespace as NS
    seen: list = []
    cts = _containers(seen)
    ct = Container(id="c1", pool="p", user="u", distribution="busybox", version="1")

    async def noop(*args):
        pass

    async def handler(ct, hook, pid):
        if hook_error:
            raise RuntimeError(hook_error)

    async def lxc_start(pool, ct_id, offset):
        try:
            await cts.hook(ct, "start-host", 7)
        except Exception:  # the hook socket answers "error", the hook exits 1
            raise OsctlError(CONFLICT, "container c1 failed to start: hook exited 1") from None

    cts.write_netconfig = cts.settle = cts.refresh = noop
    cts.write_config = cts.remove_monitor_cgroup = lambda *a: None
    cts.cgroups = NS(apply_groups=lambda *a: None, apply_cpu_view=lambda *a: None, ct=lambda *a: "")
    cts.nodes = NS(prepare=lambda *a: None)
    cts.exit_codes = NS(watch=lambda *a: None)
    cts.lxc = NS(lxcpath=lambda pool: pool, log_size=lambda *a: 0, start=lxc_start)
    cts.record_start_error = lambda *a: None  # beside LXC's log, on disk
    cts.hook_handlers.append(handler)
    pstate = NS(pool=NS(backend="dir"), users={"u": NS(root_uid=1000, root_gid=1000)})
    return cts, pstate, ct


def test_a_failed_start_says_why_its_hook_refused():
    """The start attempt's own future carries the hook's reason to the caller."""
    cts, pstate, ct = _startable("address 192.0.2.1 is taken")
    with pytest.raises(OsctlError, match="container c1 failed to start: address 192.0.2.1 is taken"):
        asyncio.run(cts.start(pstate, ct))
    assert cts.attempts == {}


def test_a_start_whose_hook_agrees_runs():
    cts, pstate, ct = _startable(None)
    asyncio.run(cts.start(pstate, ct))
    assert (ct.state, ct.init_pid, cts.attempts) == (S.RUNNING, 7, {})
