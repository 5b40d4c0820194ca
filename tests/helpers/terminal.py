"""A command on a pseudo-terminal, for tests that type at it as a person would."""

from __future__ import annotations

import os
import re
import select
import subprocess

from .node import OSCTL
from .wait import wait_for


class Terminal:
    """A command on a pseudo-terminal of its own, driven like a person would."""

    def __init__(self, argv: list[str], **popen):
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                                     start_new_session=True, **popen)
        os.close(slave)
        self.seen = b""

    def send(self, text: str | bytes) -> None:
        os.write(self.master, text.encode() if isinstance(text, str) else text)

    def expect(self, pattern: str, timeout: float = 20) -> str:
        def match() -> re.Match | None:
            m = re.search(pattern.encode(), self.seen)
            if m:
                return m
            if select.select([self.master], [], [], 0.2)[0]:
                try:
                    data = os.read(self.master, 4096)
                except OSError:  # the other side is gone
                    data = b""
                if not data:
                    raise AssertionError(f"terminal closed before {pattern!r}: {self.seen[-500:]!r}")
                self.seen += data
            return re.search(pattern.encode(), self.seen)

        m = wait_for(match, timeout, 0,
                     lambda: f"{pattern!r} on the terminal; it showed {self.seen[-500:]!r}")
        self.seen = self.seen[m.end():]
        return m.group(0).decode()

    def wait(self, timeout: float = 20) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            os.close(self.master)


def osctl_terminal(node, *args: str) -> Terminal:
    """``osctl ARGS`` on a terminal, talking to ``node``'s daemon."""
    return Terminal([OSCTL, "--socket", str(node.socket), *args])
