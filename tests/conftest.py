"""Shared fixtures. Integration tests need root, LXC and network namespaces:
where one is missing they are skipped, except under CI=true, where a missing
capability is a failure."""

from __future__ import annotations

import os
import shutil

import pytest

CI = os.environ.get("CI") == "true"
NEEDED_TOOLS = ("lxc-start", "lxc-attach", "lxc-stop", "ip", "nsenter", "busybox", "newuidmap")


def missing_capability() -> str | None:
    if os.geteuid() != 0:
        return "not root"
    missing = [t for t in NEEDED_TOOLS if shutil.which(t) is None]
    if missing:
        return f"missing tools: {', '.join(missing)}"
    if not os.path.exists("/proc/self/ns/net"):
        return "no network namespaces"
    return None


def require(reason: str | None) -> None:
    if reason:
        if CI:
            pytest.fail(f"CI=true and a capability is missing: {reason}")
        pytest.skip(reason)


@pytest.fixture
def node(request):
    """A fresh test node with a running osctld and its default dir pool."""
    require(missing_capability())
    from tests.helpers.node import TestNode

    n = TestNode()
    try:
        n.start()
        yield n
    finally:
        if getattr(request.node, "rep_call_failed", False):
            print(n.log_tail(80))
        n.cleanup()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.rep_call_failed = rep.failed
