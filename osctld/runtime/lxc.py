"""Drive LXC: configs in the lxcpath, start/stop/attach, state queries.

Anything in liblxc that forks (start, attach, console) runs as LXC's own
tool in a child process, so the daemon never forks from its threaded,
asyncio state. Queries that only talk to a container's command socket
(state, init PID) go through python-lxc in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from pathlib import Path
from typing import Callable

import _lxc

from osctl.protocol import BUSY, CONFLICT, INTERNAL, INVALID, OsctlError

from ..proc import end, run_tool, spawn
from ..store import atomic_write
from . import shortages
from .terminal import run_on_pipes, run_on_pty

ATTACH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


CAPTURE_LIMIT = 16 * 1024 * 1024


async def _bounded(stream: asyncio.StreamReader) -> bytes:
    data = b""
    while chunk := await stream.read(65536):
        data += chunk
        if len(data) > CAPTURE_LIMIT:
            raise OsctlError(INVALID, f"output over {CAPTURE_LIMIT} bytes: pass file "
                                      "descriptors (osctl ct exec does) for more")
    return data


async def _reap(proc, work, timeout: float | None):
    """Await ``work``; on timeout, cancellation or error kill ``proc`` (and
    what it runs) first."""
    try:
        return await asyncio.wait_for(work, timeout)
    except BaseException as e:
        await end(proc)
        if isinstance(e, asyncio.TimeoutError):
            raise OsctlError(BUSY, f"command inside did not finish in {timeout} s; killed") from None
        raise


class LxcRuntime:
    def __init__(self, lxc_dir: Path, log_dir: Callable[[str], Path]):
        self.lxc_dir = Path(lxc_dir)
        # A pool's log directory, by its name: each container's LXC log is
        # kept in its pool, so why it last failed survives a reboot (the run
        # directory does not) and travels with the pool.
        self.log_dir = log_dir

    def lxcpath(self, pool: str) -> Path:
        return self.lxc_dir / pool

    def ct_dir(self, pool: str, ct_id: str) -> Path:
        return self.lxcpath(pool) / ct_id

    def log_file(self, pool: str, ct_id: str) -> Path:
        return self.log_dir(pool) / "ct" / f"{ct_id}.log"

    def start_error_file(self, pool: str, ct_id: str) -> Path:
        """Why its last start failed, beside its log: ``ct log`` shows it first."""
        return self.log_file(pool, ct_id).with_suffix(".start-error")

    def seccomp_file(self, pool: str, ct_id: str) -> Path:
        return self.ct_dir(pool, ct_id) / "seccomp"

    def write_config(self, pool: str, ct_id: str, config: str, seccomp: str) -> None:
        """Write the container's LXC config and seccomp profile where they
        changed. They live in the run directory and are rendered again at
        every daemon start, so they need no fsync. They are root's alone (ids,
        maps, limits), and so is the container's directory; the lxcpath
        above it is 0711: LXC checks that the container's root can pass."""
        for d in (self.lxc_dir, self.lxcpath(pool)):
            d.mkdir(exist_ok=True)
            os.chmod(d, 0o711)
        self.log_file(pool, ct_id).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        for path, text in ((self.seccomp_file(pool, ct_id), seccomp),
                           (self.ct_dir(pool, ct_id) / "config", config)):
            data = text.encode()
            try:
                if path.read_bytes() == data:
                    continue
            except FileNotFoundError:
                pass
            atomic_write(path, data, durable=False)

    def rename(self, pool: str, old: str, new: str) -> None:
        """What LXC keeps of a stopped container moves to its new id."""
        for path in (self.ct_dir, self.log_file, self.start_error_file):
            with contextlib.suppress(FileNotFoundError):
                path(pool, old).rename(path(pool, new))

    def remove(self, pool: str, ct_id: str) -> None:
        shutil.rmtree(self.ct_dir(pool, ct_id), ignore_errors=True)
        with contextlib.suppress(KeyError):  # a pool on its way in or out
            self.log_file(pool, ct_id).unlink(missing_ok=True)
            self.start_error_file(pool, ct_id).unlink(missing_ok=True)

    # --- queries --------------------------------------------------------------

    def query(self, pool: str, ct_id: str) -> tuple[str, int | None]:
        """(state, init pid) from the container's monitor. Blocking, but quick.

        The binding's C type, not ``lxc.Container``: that one refers to
        itself (its ``network`` list), so it lives until the garbage collector
        runs, and with it the container's log file, which liblxc opens when
        it loads the config: open files in the pool that keep it from being
        unmounted, one more per query."""
        c = _lxc.Container(ct_id, str(self.lxcpath(pool)))
        state = (c.state or "STOPPED").lower()
        pid = c.init_pid if state != "stopped" else -1
        return state, (pid if pid and pid > 0 else None)

    async def aquery(self, pool: str, ct_id: str) -> tuple[str, int | None]:
        return await asyncio.to_thread(self.query, pool, ct_id)

    # --- lifecycle --------------------------------------------------------------

    def _base(self, tool: str, pool: str, ct_id: str) -> list[str]:
        return [tool, "-n", ct_id, "-P", str(self.lxcpath(pool))]

    def log_since(self, pool: str, ct_id: str, since: int) -> str:
        """What LXC logged to the container's log file since byte offset ``since``."""
        try:
            with open(self.log_file(pool, ct_id), "rb") as f:
                f.seek(since)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    @staticmethod
    def errors(text: str) -> str:
        """The last ERROR lines of LXC log text, without their prefixes."""
        errs = [ln.split(" - ", 1)[-1] for ln in text.splitlines() if " ERROR " in ln]
        return "; ".join(errs[-4:])

    def log_size(self, pool: str, ct_id: str) -> int:
        try:
            return os.path.getsize(self.log_file(pool, ct_id))
        except OSError:
            return 0

    async def start(self, pool: str, ct_id: str, offset: int) -> None:
        """Start it; ``offset`` is the size of its log before, where this start's lines begin."""
        rc, out = await run_tool(*self._base("lxc-start", pool, ct_id))
        if rc != 0:
            text = self.log_since(pool, ct_id, offset)
            why = "; ".join([self.errors(text) or out.strip(), *shortages.explain(text + out)])
            # Not the daemon's fault (internal): the container cannot start
            # as configured on this node, for LXC's reason given.
            raise OsctlError(CONFLICT, f"container {ct_id} failed to start: {why}")

    async def stop(self, pool: str, ct_id: str, timeout: int, kill: bool = False) -> None:
        argv = self._base("lxc-stop", pool, ct_id)
        # lxc-stop -t 0 sends the halt signal and returns at once, the
        # container still up: no time for a clean stop is a kill.
        argv += ["-k"] if kill or timeout == 0 else ["-t", str(timeout)]
        rc, out = await run_tool(*argv)
        if rc == 2:  # not running
            return
        if rc != 0:
            # A clean stop that timed out: lxc-stop has already killed it.
            state, _ = await self.aquery(pool, ct_id)
            if state != "stopped":
                raise OsctlError(INTERNAL, f"container {ct_id} did not stop: {out.strip()}")

    async def attach(self, pool: str, ct_id: str, argv: list[str], fds: list[int] | None,
                     env: dict[str, str] | None = None, stdin: bytes | None = None,
                     timeout: float | None = None) -> tuple[int, bytes, bytes]:
        """Run ``argv`` inside. With ``fds`` (stdin, stdout, stderr) the process uses
        them directly (or through a pty or pipes, see .terminal) and nothing is
        captured; without, ``stdin`` is fed to it and its output captured, up to
        CAPTURE_LIMIT bytes each. The process is killed when ``timeout`` runs out
        or the operation is cancelled: what runs inside is the tenant's, and may
        never end."""
        cmd = self._attach_cmd(pool, ct_id, argv, env)
        if fds:
            if len(fds) != 3:
                raise OsctlError(INVALID, "pass three file descriptors: stdin, stdout, stderr")
            if os.isatty(fds[0]):
                return await run_on_pty(cmd, fds), b"", b""
            if os.isatty(fds[1]) or os.isatty(fds[2]):
                return await run_on_pipes(cmd, fds), b"", b""
            proc = await spawn(*cmd, stdin=fds[0], stdout=fds[1], stderr=fds[2])
            return await _reap(proc, proc.wait(), timeout), b"", b""
        proc = await spawn(
            *cmd, stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)

        async def talk() -> tuple[bytes, bytes]:
            if stdin:
                proc.stdin.write(stdin)
                await proc.stdin.drain()
                proc.stdin.close()
            out, err = await asyncio.gather(_bounded(proc.stdout), _bounded(proc.stderr))
            await proc.wait()
            return out, err

        out, err = await _reap(proc, talk(), timeout)
        return proc.returncode, out, err

    def _attach_cmd(self, pool: str, ct_id: str, argv: list[str],
                    env: dict[str, str] | None) -> list[str]:
        cmd = self._base("lxc-attach", pool, ct_id) + ["--clear-env", "-v", f"PATH={ATTACH_PATH}"]
        for k, v in (env or {}).items():
            cmd += ["-v", f"{k}={v}"]
        return cmd + (["--", *argv] if argv else [])

    async def stream(self, pool: str, ct_id: str, argv: list[str], fd: int, writes: bool,
                     timeout: float | None = None) -> tuple[int, bytes]:
        """Run ``argv`` inside with ``fd`` as its stdout (``writes``) or its
        stdin: a stream to or from the caller (``ct cp``) that the daemon
        never copies. Its exit code and its stderr (bounded) come back."""
        null = asyncio.subprocess.DEVNULL
        proc = await spawn(*self._attach_cmd(pool, ct_id, argv, None), stdin=null if writes else fd,
                           stdout=fd if writes else null, stderr=asyncio.subprocess.PIPE)

        async def talk() -> bytes:
            err = await _bounded(proc.stderr)
            await proc.wait()
            return err

        err = await _reap(proc, talk(), timeout)
        return proc.returncode, err

    async def set_hostname(self, init_pid: int, hostname: str) -> None:
        """Set the hostname in the container's UTS namespace with the host's own
        tool, not the tenant's (which could be anything, and never return)."""
        rc, out = await run_tool("nsenter", "--target", str(init_pid), "--uts",
                                 "hostname", hostname)
        if rc != 0:
            raise OsctlError(INTERNAL, f"setting the hostname failed: {out.strip()}")

    async def console(self, pool: str, ct_id: str, fds: list[int], tty: int = 0) -> int:
        if len(fds) != 3 or not os.isatty(fds[0]):
            raise OsctlError(CONFLICT, "the console needs a terminal: run osctl ct console from one")
        cmd = self._base("lxc-console", pool, ct_id) + ["-t", str(tty)]
        proc = await spawn(*cmd, stdin=fds[0], stdout=fds[1], stderr=fds[2])
        return await _reap(proc, proc.wait(), None)
