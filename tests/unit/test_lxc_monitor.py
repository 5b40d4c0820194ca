"""How a container's init ended: LXC's monitor FIFO, read as lxc-monitord does."""

from __future__ import annotations

import os
import signal

from osctld.runtime.lxc_monitor import MSG, MSG_EXIT_CODE, MSG_STATE, ExitCodes, describe


def test_wait_statuses_are_described():
    assert describe(3 << 8) == {"exit_status": 3}
    assert describe(signal.SIGKILL) == {"signal": "SIGKILL"}
    assert describe(0) == {"exit_status": 0}


def test_exit_codes_come_from_the_monitor_fifo(tmp_path):
    codes = ExitCodes(tmp_path)
    lxcpath = "/var/tmp/node/run/lxc/default"
    codes.watch(lxcpath)
    try:
        fifo = codes.fifo(lxcpath)
        assert fifo == tmp_path / "lxc/var/tmp/node/run/lxc/default/monitor-fifo"
        # A second reader (a stray lxc-monitord) is kept out by the lock.
        other = ExitCodes(tmp_path)
        pid = os.fork()
        if pid == 0:  # locks are per process
            other.watch(lxcpath)
            os._exit(0 if lxcpath not in other.fds else 1)
        assert os.waitpid(pid, 0)[1] == 0
        # As LXC's monitor writes them (this process's own open and close of the
        # FIFO drops its lock: POSIX locks are per process and file): whole messages, non-blocking open.
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, MSG.pack(MSG_STATE, b"c1", 4) + MSG.pack(MSG_EXIT_CODE, b"c1", 3 << 8)
                 + MSG.pack(MSG_EXIT_CODE, b"c2", signal.SIGKILL))
        os.close(fd)
        assert MSG.size == 264  # sizeof(struct lxc_msg)
        assert codes.take(lxcpath, "c1") == 3 << 8
        assert codes.take(lxcpath, "c1") is None  # once
        assert codes.take(lxcpath, "c2") == signal.SIGKILL
    finally:
        codes.close()
    assert not (tmp_path / "lxc/var").exists()  # the FIFO and its directories are gone
    assert (tmp_path / "lxc").is_dir()
