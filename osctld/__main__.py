"""`osctld`: read the configuration, run the daemon until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from . import __version__
from .config import Config
from .daemon import Daemon

# journald reads a "<N>" syslog priority at the start of each stderr line.
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        prio = _PRIORITY.get(record.levelno, 6)
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="osctld", description="Container hypervisor daemon.")
    ap.add_argument("--config", type=Path, help="YAML configuration file (see README for keys)")
    ap.add_argument("--version", action="version", version=f"osctld {__version__}")
    args = ap.parse_args(argv)
    try:
        config = Config.load(args.config)
    except (OSError, ValueError, TypeError) as e:
        print(f"osctld: bad configuration: {e}", file=sys.stderr)
        return 2
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    logging.basicConfig(level=config.log_level.upper(), handlers=[handler])
    try:
        asyncio.run(Daemon(config).run())
    except RuntimeError as e:
        logging.getLogger("osctld").error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
