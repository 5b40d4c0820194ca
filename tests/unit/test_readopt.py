"""Defect 12: a container whose init has exited is not held as running,
whatever LXC's monitor (on its way down) still says."""

from __future__ import annotations

import asyncio
import os
import subprocess

import pytest

from osctl.protocol import BUSY, OsctlError
from osctld.model.container import Container
from osctld.runtime.cgroup.layout import CgroupLayout
from osctld.runtime.container import Containers
from osctld.runtime.cgroup.tree import CgroupTree


class FakeLxc:
    def __init__(self, tmp_path, state: str, pid: int | None):
        self.dir, self.state, self.pid = tmp_path, state, pid

    async def aquery(self, pool, ct_id):
        return self.state, self.pid

    def ct_dir(self, pool, ct_id):
        return self.dir / pool / ct_id


def containers(tmp_path, state: str, pid: int | None, proc=None) -> tuple[Containers, list]:
    seen: list = []
    c = Containers(FakeLxc(tmp_path, state, pid), None, None, CgroupTree(CgroupLayout(()), "osctl"),
                   on_state=lambda ct: seen.append((ct.state, ct.init_pid)), nodes=None,
                   lxcfs=None, statfs=None, exit_codes=None, net=None)
    if proc is not None:
        c.PROC = proc
    return c, seen


def ct() -> Container:
    return Container(id="c1", pool="default", user="u1", distribution="busybox", version="1")


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_refresh_takes_a_dead_init_as_stopped(tmp_path):
    c, seen = containers(tmp_path, "running", dead_pid())
    x = ct()
    asyncio.run(c.refresh(x))
    assert (x.state, x.init_pid) == ("stopped", None)
    assert seen == []  # it was stopped before too: nothing changed


def test_an_exited_unreaped_init_is_not_running(tmp_path):
    p = subprocess.Popen(["true"])
    try:
        os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)  # a zombie now
        c, _ = containers(tmp_path, "running", p.pid)
        x = ct()
        c.adopt(x, "running", p.pid)
        assert x.state == "stopped"
    finally:
        p.wait()


def test_another_process_with_the_pid_is_not_its_init(tmp_path):
    c, _ = containers(tmp_path, "running", os.getpid())
    x = ct()
    c.adopt(x, "running", os.getpid())
    assert (x.state, x.init_pid) == ("stopped", None)


def test_a_live_init_in_the_containers_cgroup_is_running(tmp_path):
    proc = tmp_path / "proc"
    (proc / "4242").mkdir(parents=True)
    (proc / "4242" / "stat").write_text("4242 (systemd) S 1 4242 4242 0 -1\n")
    (proc / "4242" / "cgroup").write_text(
        "4:memory:/base/osctl/pool.default/group.default/ct.c1/ns\n"
        "0::/osctl/pool.default/group.default/ct.c1/ns/init.scope\n")
    c, seen = containers(tmp_path, "running", 4242, proc)
    x = ct()
    asyncio.run(c.refresh(x))
    assert (x.state, x.init_pid) == ("running", 4242)
    assert seen == [("running", 4242)]
    # c1's init is not the init of c (a prefix of its name).
    y = Container(id="c", pool="default", user="u1", distribution="busybox", version="1")
    c.adopt(y, "running", 4242)
    assert y.state == "stopped"


def test_a_start_waits_for_lxc_to_be_done_with_the_dead_init(tmp_path):
    """Held as stopped (its init is gone) while LXC's monitor still tears
    down: the start waits for it rather than meet "already running"."""
    c, _ = containers(tmp_path, "running", dead_pid())
    answers = iter(["running", "stopping", "stopped"])

    async def aquery(pool, ct_id):
        return next(answers), None

    c.lxc.aquery = aquery
    asyncio.run(c.settle(ct()))
    assert next(answers, "all asked") == "all asked"


def test_a_start_gives_up_busy_if_lxc_never_lets_go(tmp_path):
    c, _ = containers(tmp_path, "running", dead_pid())
    with pytest.raises(OsctlError) as e:
        asyncio.run(c.settle(ct(), timeout=0.3))
    assert e.value.code == BUSY
