"""LXC hook: tell osctld that a container started or stopped.

Run by liblxc as ``python -I -S hook.py SOCKET POOL NAME SECTION HOOKTYPE``.
Standard library only, no imports from osctld: it sits on the path of every
start and stop, so it imports only C modules (``_socket``, not ``socket``;
no ``json``, which alone would double its start-up) and writes its one JSON
line by hand. It waits (briefly) for the daemon's answer, so the daemon may
do its part of the start (network, say) before the container's init runs.
When the daemon is down the hook succeeds all the same: the daemon reads
the real state from LXC when it comes back.
"""

import os
import sys
from _socket import AF_UNIX, SOCK_STREAM, socket

TIMEOUT = 30.0


def json_str(s: str) -> str:
    """``s`` as a JSON string literal."""
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch < " ":
            out.append("\\u%04x" % ord(ch))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def message(pool: str, name: str, hook: str, pid: str | None, target: str | None) -> bytes:
    """The JSON line for the daemon: pool, ct, hook and, where LXC gives them,
    pid and target (post-stop: "stop", or "reboot" from inside)."""
    fields = ['"pool": ' + json_str(pool), '"ct": ' + json_str(name), '"hook": ' + json_str(hook)]
    if target:
        fields.append('"target": ' + json_str(target))
    if pid and pid.isdigit():
        fields.append('"pid": ' + str(int(pid)))
    return ("{" + ", ".join(fields) + "}\n").encode("utf-8", "replace")


def main(argv):
    pool = argv[2]
    name = os.environ.get("LXC_NAME") or (argv[3] if len(argv) > 3 else "")
    hook = os.environ.get("LXC_HOOK_TYPE") or (argv[5] if len(argv) > 5 else "")
    msg = message(pool, name, hook, os.environ.get("LXC_PID"), os.environ.get("LXC_TARGET"))
    try:
        s = socket(AF_UNIX, SOCK_STREAM)
        try:
            s.settimeout(TIMEOUT)
            s.connect(argv[1])
            s.sendall(msg)
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = s.recv(256)
                if not chunk:
                    break
                reply += chunk
        finally:
            s.close()
    except OSError:
        return 0
    reply = reply.decode("utf-8", "replace").strip()
    if reply.startswith("error"):
        sys.stderr.write(f"osctld refused {hook} of {pool}:{name}: {reply}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
