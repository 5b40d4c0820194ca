"""Per-object locks: first come, first served, shared and exclusive alike."""

from __future__ import annotations

import asyncio

import pytest

from osctl.protocol import OsctlError
from osctld import asker, locks
from osctld.locks import Locks

KEY = locks.ct_key("p", "c1")


def run(coro):
    return asyncio.run(coro)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


class Log:
    """Callers that take the lock, note when they got it, and hold it until let go."""

    def __init__(self, locks: Locks):
        self.locks = locks
        self.got: list[str] = []
        self.release: dict[str, asyncio.Event] = {}

    def caller(self, name: str, shared: bool = False, key=KEY) -> asyncio.Task:
        self.release[name] = asyncio.Event()

        async def go():
            async with self.locks.hold(key, name, shared=shared):
                self.got.append(name)
                await self.release[name].wait()
        return asyncio.create_task(go())

    async def let_go(self, name: str) -> None:
        self.release[name].set()
        await settle()


def test_waiters_get_the_lock_in_the_order_they_asked():
    async def main():
        log = Log(Locks(10))
        tasks = [log.caller(n) for n in "abcde"]
        await settle()
        assert log.got == ["a"]
        for n in "abcd":
            await log.let_go(n)
        assert log.got == list("abcde")
        await log.let_go("e")
        await asyncio.gather(*tasks)
    run(main())


def test_a_caller_who_asks_again_goes_behind_those_waiting():
    async def main():
        locks = Locks(10)
        got = []

        async def client(name: str, rounds: int):
            for _ in range(rounds):
                async with locks.hold(KEY, name):
                    got.append(name)
                    await asyncio.sleep(0)  # a turn, as real work would take

        # "a" asks again at once each time; "b" and "c" must get their turns in between.
        await asyncio.gather(client("a", 3), client("b", 3), client("c", 3))
        assert got == list("abc" * 3)
    run(main())


def test_shared_holders_share_and_an_exclusive_one_waits_for_all():
    async def main():
        log = Log(Locks(10))
        tasks = [log.caller("r1", shared=True), log.caller("r2", shared=True), log.caller("w")]
        await settle()
        assert log.got == ["r1", "r2"]
        await log.let_go("r1")
        assert log.got == ["r1", "r2"]
        await log.let_go("r2")
        assert log.got == ["r1", "r2", "w"]
        await log.let_go("w")
        await asyncio.gather(*tasks)
    run(main())


def test_a_reader_behind_a_waiting_writer_waits_and_readers_together_go_together():
    async def main():
        log = Log(Locks(10))
        tasks = [log.caller("r1", shared=True)]
        await settle()
        tasks += [log.caller("w"), log.caller("r2", shared=True), log.caller("r3", shared=True),
                  log.caller("w2")]
        await settle()
        assert log.got == ["r1"]  # r2 does not overtake the writer, which would starve it
        await log.let_go("r1")
        assert log.got == ["r1", "w"]
        await log.let_go("w")
        assert log.got == ["r1", "w", "r2", "r3"]  # the readers at the head go at once
        await log.let_go("r2")
        await log.let_go("r3")
        assert log.got[-1] == "w2"
        await log.let_go("w2")
        await asyncio.gather(*tasks)
    run(main())


def test_a_cancelled_waiter_leaves_the_queue_and_holds_no_one_back():
    async def main():
        log = Log(Locks(10))
        tasks = {n: log.caller(n, shared=(n != "w")) for n in ("r1", "w", "r2")}
        await settle()
        assert log.got == ["r1"]
        tasks["w"].cancel()  # the writer r2 queued behind gives up
        await settle()
        assert log.got == ["r1", "r2"]
        for n in ("r1", "r2"):
            await log.let_go(n)
        with pytest.raises(asyncio.CancelledError):
            await tasks["w"]
        # Nothing is left held: a writer gets it at once.
        t = log.caller("w3")
        await settle()
        assert log.got[-1] == "w3"
        await log.let_go("w3")
        await t
        assert log.locks._entries == {}
    run(main())


def test_a_waiter_cancelled_as_it_is_granted_passes_the_lock_on():
    async def main():
        log = Log(Locks(10))
        go = asyncio.Event()

        async def first():
            async with log.locks.hold(KEY, "a"):
                await go.wait()
            tasks[0].cancel()  # "b" has just been granted the lock but not run yet

        holder = asyncio.create_task(first())
        await settle()
        tasks = [log.caller("b"), log.caller("c")]
        await settle()
        go.set()
        await settle()
        assert log.got == ["c"]
        await log.let_go("c")
        await asyncio.gather(holder, *tasks, return_exceptions=True)
        assert log.locks._entries == {}
    run(main())


def test_a_caller_that_waits_too_long_is_told_who_holds_it():
    async def main():
        log = Log(Locks(0.2))
        holder = log.caller("ct.start")
        await settle()
        with pytest.raises(OsctlError) as e:
            async with log.locks.hold(KEY, "ct.stop"):
                pass
        assert e.value.code == "busy" and e.value.message == "ct/p/c1 is busy with ct.start"
        waiter = log.caller("next")  # the timed-out caller left nothing behind
        await log.let_go("ct.start")
        assert log.got == ["ct.start", "next"]
        await log.let_go("next")
        await asyncio.gather(holder, waiter)
    run(main())


def test_other_keys_are_independent():
    async def main():
        log = Log(Locks(10))
        others = [locks.ct_key("p", "c2"), locks.ct_key("q", "c1"), locks.vm_key("p", "c1"),
                  locks.pool_key("p"), locks.users_key("p"), locks.groups_key("p"),
                  locks.pool_import_key("/p")]
        assert len(set(others + [KEY])) == 8  # no two kinds of key alike
        tasks = [log.caller("a"), *(log.caller(str(k), key=k) for k in others)]
        await settle()
        assert log.got == ["a", *map(str, others)]  # each granted at once
        for name in log.got:
            await log.let_go(name)
        await asyncio.gather(*tasks)
    run(main())


def test_instance_key_is_its_kinds_key():
    """A command on either kind (hold_instance) and one on its own kind take one lock."""
    assert locks.instance_key("ct", "p", "c1") == KEY
    assert locks.instance_key("vm", "p", "c1") == locks.vm_key("p", "c1") != KEY


def test_a_waiter_is_told_whose_operation_it_waits_for(monkeypatch):
    """After a second's wait (here 0.05 s) the caller hears which operation
    holds the lock; a caller that got it at once hears nothing."""
    monkeypatch.setattr(asker, "TELL_AFTER", 0.05)
    told: dict[str, list[dict]] = {"a": [], "b": []}

    async def ask(name: str, hold: asyncio.Event, held: asyncio.Event) -> None:
        asker.ASKER.set(asker.Asker(f"7:{name}", "vm.stop", told[name].append))
        async with lk.hold(KEY, "vm.stop"):
            held.set()
            await hold.wait()

    async def main():
        a_hold, a_held, b_held = asyncio.Event(), asyncio.Event(), asyncio.Event()
        a = asyncio.create_task(ask("a", a_hold, a_held))
        await a_held.wait()
        b = asyncio.create_task(ask("b", asyncio.Event(), b_held))
        await asyncio.sleep(0.15)
        assert not b_held.is_set()
        a_hold.set()
        await a_held.wait()
        await asyncio.wait_for(b_held.wait(), 1)
        b.cancel()
        await asyncio.gather(a, b, return_exceptions=True)

    lk = Locks(10)
    run(main())
    assert told["a"] == []
    assert told["b"] == [{"step": "wait", "message": "waiting for ct/p/c1: vm.stop (op 7:a)"}]


def test_a_quick_wait_is_not_told(monkeypatch):
    monkeypatch.setattr(asker, "TELL_AFTER", 5)
    heard: list[dict] = []

    async def main():
        log = Log(Locks(10))
        first = log.caller("a")
        await settle()
        asker.ASKER.set(asker.Asker("7:2", "ct.set", heard.append))
        second = log.caller("b")
        await log.let_go("a")
        await log.let_go("b")
        await asyncio.gather(first, second)
        assert log.got == ["a", "b"]
    run(main())
    assert heard == []
