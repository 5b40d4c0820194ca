"""The node VM's test agent: runs the host's commands and answers with their
results, over a virtio serial port (QEMU ``virtserialport``, name
``nodevm``; tests/helpers/nodevm.py is the other end).

One JSON object a line each way. A request ``{"id", "cmd", "timeout"}`` runs
``cmd`` with ``sh -c`` in a session of its own (on timeout the whole session
is killed); the answer is ``{"id", "rc", "stdout", "stderr"}`` (rc -9 after
a timeout). Requests run one at a time, in order. Runs under the guest's
own python3 (stdlib only), started by nodevm-init.
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
    return {"id": req["id"], "rc": rc, "stdout": out.decode(errors="replace"),
            "stderr": err.decode(errors="replace")}


def main(port: str) -> None:
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
                tx.write(json.dumps(run(req)).encode() + b"\n")


if __name__ == "__main__":
    main(sys.argv[1])
