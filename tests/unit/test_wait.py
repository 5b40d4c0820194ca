"""The tests' one polling loop: what it returns, and what its failure says."""

from __future__ import annotations

import itertools
import time

import pytest

from tests.helpers.wait import wait_for


def test_returns_the_first_value_that_holds():
    values = iter([0, None, "", 3, 4])
    assert wait_for(lambda: next(values), 5, 0) == 3


def test_until_judges_the_value_and_the_value_is_returned():
    counter = itertools.count()
    assert wait_for(lambda: next(counter), 5, 0, until=lambda n: n >= 3) == 3
    # A false value may be the one awaited.
    assert wait_for(lambda: [], 1, 0, until=lambda v: v == []) == []


def test_failure_says_what_was_awaited_and_the_last_value_seen():
    counter = itertools.count()
    with pytest.raises(AssertionError) as e:
        wait_for(lambda: f"state-{next(counter)}", 0.3, 0.05, "c1 to stop", until=lambda s: s == "stopped")
    msg = str(e.value)
    assert "c1 to stop" in msg and "0.3 s" in msg
    last = int(msg.rsplit("state-", 1)[1].rstrip("'"))
    assert last >= 2  # asked again and again, and the last answer is the one shown


def test_a_message_callable_is_asked_only_on_failure():
    asked = []

    def message() -> str:
        asked.append(1)
        return "details known at the end"

    wait_for(lambda: True, 1, 0, message)
    assert asked == []
    with pytest.raises(AssertionError, match="details known at the end"):
        wait_for(lambda: False, 0.1, 0.02, message)
    assert asked == [1]


def test_a_long_last_value_is_shown_by_its_end():
    with pytest.raises(AssertionError) as e:
        wait_for(lambda: "x" * 10_000 + "THE-END", 0.05, 0.01, until=lambda v: False)
    assert "THE-END" in str(e.value) and len(str(e.value)) < 2200


def test_ignored_exceptions_are_not_yet_others_end_the_wait():
    calls = itertools.count()

    def flaky() -> str:
        if next(calls) < 3:
            raise ConnectionRefusedError("not up yet")
        return "up"

    assert wait_for(flaky, 5, 0, ignore=(OSError,)) == "up"
    with pytest.raises(AssertionError, match="ConnectionRefusedError"):
        wait_for(lambda: (_ for _ in ()).throw(ConnectionRefusedError("down")), 0.1, 0.02, ignore=(OSError,))
    with pytest.raises(ValueError):
        wait_for(lambda: int("x"), 5, 0, ignore=(OSError,))


def test_the_probe_is_asked_once_more_at_the_deadline_and_not_long_after():
    times: list[float] = []
    t0 = time.monotonic()
    with pytest.raises(AssertionError):
        wait_for(lambda: times.append(time.monotonic()), 0.5, 0.2)
    assert times[-1] - t0 >= 0.5  # the last word comes at the deadline
    assert time.monotonic() - t0 < 1.0  # and the wait does not overshoot by an interval or more
