"""Undo: steps roll back newest first on an error or a cancellation, each
guarded, shielded from a second cancellation; on success they are dropped."""

from __future__ import annotations

import asyncio
import logging

import pytest

from osctld.undo import Undo


def run(coro):
    return asyncio.run(coro)


async def failing(steps: list, error: Exception) -> None:
    """An operation that makes ``steps`` (pushing each one's undo) and then fails."""
    async with Undo() as undo:
        for fn, arg in steps:
            undo.push(fn, arg)
        raise error


def test_on_success_nothing_is_undone():
    done: list[str] = []

    async def main():
        async with Undo() as undo:
            undo.push(done.append, "a")
            undo.push(done.append, "b")
        assert undo.steps == []
    run(main())
    assert done == []


def test_an_error_rolls_back_newest_first_and_goes_on():
    done: list[str] = []

    async def remove(what: str) -> None:
        await asyncio.sleep(0)
        done.append(f"async {what}")

    with pytest.raises(ValueError, match="step four failed"):
        run(failing([(done.append, "first"), (remove, "second"), (done.append, "third")],
                    ValueError("step four failed")))
    assert done == ["third", "async second", "first"]


def test_a_failing_step_is_logged_and_the_others_still_run(caplog):
    done: list[str] = []

    def broken(what: str) -> None:
        raise OSError(f"cannot remove {what}")

    with caplog.at_level(logging.ERROR, logger="osctld.undo"), pytest.raises(KeyError):
        run(failing([(done.append, "a"), (broken, "b"), (done.append, "c")], KeyError("boom")))
    assert done == ["c", "a"]
    assert "rollback step broken('b',) failed" in caplog.text and "cannot remove b" in caplog.text


def test_a_cancelled_operation_rolls_back():
    done: list[str] = []

    async def main():
        started = asyncio.Event()

        async def op():
            async with Undo() as undo:
                undo.push(done.append, "made")
                started.set()
                await asyncio.Event().wait()  # cancelled here

        task = asyncio.create_task(op())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    run(main())
    assert done == ["made"]


def test_a_second_cancel_does_not_stop_a_rollback_half_way():
    done: list[str] = []

    async def main():
        started, in_rollback, go_on = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def slow_removal(what: str) -> None:
            in_rollback.set()
            await go_on.wait()  # a rollback step that takes its time
            done.append(what)

        async def op():
            async with Undo() as undo:
                undo.push(done.append, "first")
                undo.push(slow_removal, "second")
                started.set()
                await asyncio.Event().wait()

        task = asyncio.create_task(op())
        await started.wait()
        task.cancel()  # op.cancel
        await in_rollback.wait()
        task.cancel()  # and again (another op.cancel, the daemon's shutdown)
        with pytest.raises(asyncio.CancelledError):
            await task
        assert done == []  # the caller is gone; the rollback is not
        go_on.set()
        for _ in range(20):
            await asyncio.sleep(0)
        assert done == ["second", "first"]
    run(main())


def test_rollback_on_its_own_empties_the_steps():
    done: list[int] = []

    async def main():
        undo = Undo()
        for i in range(3):
            undo.push(done.append, i)
        await undo.rollback()
        await undo.rollback()  # nothing left to do twice
        assert undo.steps == []
    run(main())
    assert done == [2, 1, 0]
