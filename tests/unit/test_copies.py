"""The copy a send or replica left at another node, told to go when its
instance is deleted here: ``ct del``, ``vm del --force`` and the hard stage
of a staged deletion call one function; a node that does not answer keeps
its copy, and the deletion goes on."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import pytest

from osctl.protocol import INTERNAL, NOT_FOUND, OsctlError
from osctld.model.container import Container
from osctld.model.sendlog import DESTINATION, SOURCE, SendLog, Stage
from osctld.model.vm import VM
from osctld.transfer import channel, copies


def _log(role: str = SOURCE) -> SendLog:
    return SendLog(role=role, token="t0k", stage=Stage.SYNC, peer="node3:22", as_id="x2",
                   pool="bt", stream="btrfs", replica=True)


@pytest.fixture
def calls(monkeypatch):
    """What the node would be told; ``calls.answer``: what it answers (an error raised)."""
    made: list[tuple[str, str, dict]] = []

    async def call(node, dest, verb, args, **kw):
        made.append((dest, verb, args))
        if isinstance(getattr(call, "answer", None), OsctlError):
            raise call.answer
        return {}

    monkeypatch.setattr(channel, "call", call)
    return call, made


def test_each_kind_tells_its_own_receive_verb(calls):
    _, made = calls
    ct = Container(id="x", pool="tank", user="alice", distribution="busybox", version="1")
    vm = VM(id="x", pool="tank", user="alice", template="tinyvm", version="1", cores=1,
            memory=1 << 28, disk=1 << 30)
    for inst in (ct, vm):
        inst.send_log = _log()
        asyncio.run(copies.take_down(None, inst))
    assert made == [("node3:22", "ct.receive.cancel", {"token": "t0k"}),
                    ("node3:22", "vm.receive.replica.cancel", {"pool": "bt", "id": "x2", "token": "t0k"})]


def test_a_copy_gone_or_a_node_down_does_not_stop_a_deletion(calls, caplog):
    call, made = calls
    vm = VM(id="v1", pool="tank", user="alice", template="tinyvm", version="1", cores=1,
            memory=1 << 28, disk=1 << 30, send_log=_log())
    call.answer = OsctlError(NOT_FOUND, "no such replica")
    asyncio.run(copies.take_down(None, vm))
    assert not caplog.records
    call.answer = OsctlError(INTERNAL, "cannot connect to node3:22")
    with caplog.at_level(logging.WARNING):
        asyncio.run(copies.take_down(None, vm))
    assert "its copy at node3:22 stays" in caplog.text and "del --force" in caplog.text
    with pytest.raises(OsctlError):  # a cancel asked for says why it failed
        asyncio.run(copies.cancel_at(None, "vm", vm.send_log))


def test_the_end_that_holds_a_copy_tells_no_one(calls):
    _, made = calls
    vm = VM(id="v1", pool="tank", user="alice", template="tinyvm", version="1", cores=1,
            memory=1 << 28, disk=1 << 30, send_log=_log(DESTINATION))
    asyncio.run(copies.take_down(None, vm))
    vm.send_log = None
    asyncio.run(copies.take_down(None, vm))
    assert made == []


def test_a_sent_container_is_the_other_nodes_and_a_silent_node_is_given_up_on(calls, monkeypatch, caplog):
    call, made = calls
    ct = Container(id="x", pool="tank", user="alice", distribution="busybox", version="1")
    # Handed over (stage state, before `ct send cleanup`): the container there
    # is no staged copy any more, and no one is told to drop it.
    ct.send_log = replace(_log(), stage=Stage.STATE)
    asyncio.run(copies.take_down(None, ct))
    assert made == []
    # A node whose sshd answers but whose osctld does not: the deletion goes on.
    gate = asyncio.Event()

    async def hang(node, dest, verb, args, **kw):
        await gate.wait()

    monkeypatch.setattr(channel, "call", hang)
    monkeypatch.setattr(copies, "TAKE_DOWN_TIMEOUT", 0.05)
    ct.send_log = _log()
    with caplog.at_level(logging.WARNING):
        asyncio.run(copies.take_down(None, ct))
    assert "its copy at node3:22 stays" in caplog.text and "no answer in 0.05 s" in caplog.text
