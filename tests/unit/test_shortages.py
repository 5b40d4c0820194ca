"""A start that fails for lack of a kernel resource names it and the setting."""

from __future__ import annotations

import pytest

from osctld.runtime import shortages
from osctld.runtime.lxc import LxcRuntime

# LXC 5's log lines (its format: tool, name, time, level, category - file:function:line - strerror - message).
PTY = """\
lxc-start c1 20261129212203.459 ERROR    conf - ../src/lxc/conf.c:lxc_allocate_ttys:892 - No space left on device - Failed to create tty 0
lxc-start c1 20261129212203.459 ERROR    conf - ../src/lxc/conf.c:lxc_create_ttys:958 - Failed to allocate ttys
lxc-start c1 20261129212203.459 ERROR    conf - ../src/lxc/conf.c:lxc_setup:3883 - Failed to create ttys
"""
KEYS = ("lxc-start c1 20261129212203.459 WARN     conf - ../src/lxc/conf.c:lxc_setup_keyring:3511 - "
        "Disk quota exceeded - Failed to create kernel keyring\n")
CONSOLE = ("lxc-start c1 20261129212203.459 ERROR    conf - ../src/lxc/conf.c:lxc_setup_console:1812 - "
           "No space left on device - Failed to allocate console from container's devpts instance\n")
MONITOR = ("lxc-start c1 20261129210913.101 ERROR    cgfsng - ../src/lxc/cgroups/cgfsng.c:cgfsng_monitor_create:1388 - "
           "Numerical result out of range - Failed to create monitor cgroup\n")
INOTIFY = "Failed to allocate manager object: Too many open files (inotify_init1)\n"


@pytest.mark.parametrize("text, setting", [
    (PTY, "kernel.pty.max"), (CONSOLE, "kernel.pty.max"),
    (KEYS, "kernel.keys.maxkeys and kernel.keys.maxbytes"),
    (INOTIFY, "fs.inotify.max_user_instances"),
])
def test_lxc_lines_name_the_resource_and_setting(text, setting):
    [hint] = shortages.explain(text)
    assert hint.endswith(f"raise {setting} (node config sysctls)")


def test_other_failures_get_no_hint():
    assert shortages.explain(MONITOR) == []
    assert shortages.explain("No space left on device - Failed to write /etc/hostname") == []


def test_the_error_lines_and_the_hint_together():
    assert LxcRuntime.errors(PTY + KEYS).endswith("lxc_setup:3883 - Failed to create ttys")
    assert len(shortages.explain(PTY + KEYS)) == 2
