"""The node VM's test agent: runs the host's commands and answers with their
results, over a virtio serial port (QEMU ``virtserialport``, name
``nodevm``; tests/helpers/nodevm.py is the other end).

One JSON object a line each way; every request has an ``id`` its answer
repeats. Requests:

- ``{"cmd", "timeout"}``: ``cmd`` with ``sh -c`` in a session of its own
  (on timeout the whole session is killed); answer ``{"rc", "stdout",
  "stderr"}`` (rc -9 after a timeout).
- ``{"call", "args", "socket", "timeout"}``: one request to the osctld at
  ``socket``, through the project's own client (osctl.client.Client);
  answer ``{"ok": result}`` or ``{"error": {"code", "message", ...}}``.
  This is what makes a test's call cost milliseconds, not the 2-3 s an
  ``osctl`` process takes to start under tcg.
- ``{"batch": [request, ...]}``: each in turn; answer ``{"results":
  [answer, ...]}``: several commands in one round trip.

Requests run one at a time, in order. nodevm-init (in the image) starts
this file from the shared worktree under the guest's python3; it then
re-executes itself under the python the kernel command line names
(``nodevm.python=``, the tests' .venv, shared over virtiofs), where the
project's client and msgpack are. Being read from the worktree at boot,
changing it rebuilds nothing.
"""

import json
import os
import signal
import subprocess
import sys
import time


def run(req: dict) -> dict:
    p = subprocess.Popen(["sh", "-c", req["cmd"]], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = p.communicate(timeout=req.get("timeout") or None)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        rc, err = -9, err + b"\n(nodevm agent: timed out, killed)"
    return {"rc": rc, "stdout": out.decode(errors="replace"), "stderr": err.decode(errors="replace")}


def call(req: dict) -> dict:
    """One osctld request. A new connection each time: the osctld it talks to
    is restarted between test modules."""
    from osctl.client import Client
    from osctl.protocol import INTERNAL, OsctlError

    try:
        with Client(req["socket"], timeout=req.get("timeout") or None) as c:
            return {"ok": c.call(req["call"], req.get("args"))}
    except OsctlError as e:
        return {"error": e.to_wire()}
    except OSError as e:  # a timeout, or the daemon went away mid-request
        return {"error": {"code": INTERNAL, "message": f"nodevm agent: {req['call']}: {e!r}"}}


def answer(req: dict) -> dict:
    try:
        if "batch" in req:
            return {"results": [answer(r) for r in req["batch"]]}
        return call(req) if "call" in req else run(req)
    except Exception as e:  # the agent lives on, and says what went wrong
        return {"rc": -1, "stdout": "", "stderr": f"nodevm agent: {e!r}",
                "error": {"code": "internal", "message": f"nodevm agent: {e!r}"}}


def as_json(value):
    """What msgpack gives and JSON has no type for: bytes (ct.exec's output)."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    raise TypeError(f"{type(value).__name__} is not JSON")


def venv_python() -> str | None:
    for arg in open("/proc/cmdline").read().split():
        if arg.startswith("nodevm.python="):
            return arg.split("=", 1)[1]
    return None


def main(port: str) -> None:
    python = venv_python()
    if python and sys.prefix == sys.base_prefix and os.access(python, os.X_OK):
        os.execv(python, [python, os.path.abspath(__file__), port])
    fd = os.open(port, os.O_RDWR)
    with open(fd, "rb", buffering=0, closefd=False) as rx, open(fd, "wb", buffering=0) as tx:
        buf = b""
        while True:
            chunk = rx.read(65536)
            if not chunk:  # the host is not connected yet: a virtio port reads EOF
                time.sleep(0.2)
                continue
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    req = json.loads(line)
                except ValueError:
                    continue  # what a reconnecting host may leave half-sent
                tx.write(json.dumps({"id": req.get("id"), **answer(req)}, default=as_json).encode() + b"\n")


if __name__ == "__main__":
    main(sys.argv[1])
