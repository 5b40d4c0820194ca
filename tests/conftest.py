"""Shared fixtures. Integration tests need root, LXC and network namespaces:
where one is missing they are skipped, except under CI=true, where a missing
capability is a failure."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

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


@contextlib.contextmanager
def running_node(request, config: dict | None = None):
    """A started test node (``config`` added to its daemon's), cleaned up
    after the test, its daemon's log printed when the test failed."""
    from tests.helpers.node import TestNode

    n = TestNode(config=config)
    try:
        n.start()
        yield n
    finally:
        if getattr(request.node, "rep_call_failed", False):
            print(n.log_tail(80))
        n.cleanup()


@pytest.fixture
def make_node(request):
    """Fresh test nodes with a config of their own (``make(**config)``),
    each started, and cleaned up after the test (logs shown if it failed)."""
    require(missing_capability())
    with contextlib.ExitStack() as stack:
        yield lambda **config: stack.enter_context(running_node(request, config))


@pytest.fixture
def node(request):
    """A fresh test node with a running osctld and its default dir pool."""
    require(missing_capability())
    with running_node(request) as n:
        yield n


# --- built templates and images ----------------------------------------------------
# The only way a test gets a template or VM image whose recipe downloads: a
# test node's namespace cannot reach the package mirror (a build started
# there fails, naming these fixtures: tests/helpers/node.py NO_MIRROR), so
# each is built here first, in the host's namespace, once per session, into
# the shared test cache (OSCTLD_TEST_CACHE), whatever order pytest picks.

BUILD_TIMES: dict[str, float] = {}


def _timed(what: str, build) -> Path:
    t0 = time.monotonic()
    try:
        return build()
    finally:
        BUILD_TIMES[what] = time.monotonic() - t0


@pytest.fixture(scope="session")
def debian_template() -> Path:
    """The debian container template (default version), debootstrapped into the cache."""
    require(missing_capability())
    from tests.helpers.templates import ensure_cached

    return _timed("debian template", lambda: ensure_cached("debian"))


def _vm_image(name: str) -> Path:
    from tests.helpers.templates import ensure_vm_image
    from tests.helpers.vm import have_qemu

    require(missing_capability() or have_qemu())
    return _timed(f"{name} VM image", lambda: ensure_vm_image(name))


@pytest.fixture(scope="session")
def tinyvm_image() -> Path:
    """The tiny test VM (Debian's cloud kernel, a busybox initramfs)."""
    return _vm_image("tinyvm")


@pytest.fixture(scope="session")
def debian_vm_image() -> Path:
    """The debian template's VM image (debootstrap with a kernel: minutes)."""
    return _vm_image("debian")


@pytest.fixture(scope="session")
def nodevm_image() -> Path:
    """The node VM's image (tests/helpers/nodevm.py): Debian's cloud kernel
    with OpenZFS's modules built here for it. Built once into the cache."""
    from tests.helpers.nodevm import ensure_image
    from tests.helpers.vm import have_qemu

    require(missing_capability() or have_qemu())
    return _timed("node VM image", lambda: ensure_image(BUILD_TIMES))


def pytest_terminal_summary(terminalreporter):
    """How long each template or image took to get (a build, or a look in the cache)."""
    if BUILD_TIMES:
        from tests.helpers.node import CACHE

        terminalreporter.write_sep("-", f"test cache {CACHE}")
        for what, seconds in BUILD_TIMES.items():
            terminalreporter.write_line(f"{what}: {seconds:.1f} s")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.rep_call_failed = rep.failed
