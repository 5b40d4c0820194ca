"""LXC hook: tell osctld that a container started or stopped.

Run by liblxc as ``python -I -S hook.py SOCKET POOL NAME SECTION HOOKTYPE``.
Standard library only, no imports from osctld, so it starts in a few ms.
It waits (briefly) for the daemon's answer, so the daemon may do its part
of the start (network, say) before the container's init runs. When the
daemon is down the hook succeeds all the same: the daemon reads the real
state from LXC when it comes back.
"""

import json
import os
import socket
import sys

TIMEOUT = 30.0


def main(argv):
    sock_path, pool = argv[1], argv[2]
    name = os.environ.get("LXC_NAME") or (argv[3] if len(argv) > 3 else "")
    hook = os.environ.get("LXC_HOOK_TYPE") or (argv[5] if len(argv) > 5 else "")
    msg = {"pool": pool, "ct": name, "hook": hook}
    if os.environ.get("LXC_TARGET"):  # post-stop: "stop", or "reboot" from inside
        msg["target"] = os.environ["LXC_TARGET"]
    if os.environ.get("LXC_PID"):
        msg["pid"] = int(os.environ["LXC_PID"])
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(TIMEOUT)
        s.connect(sock_path)
        s.sendall(json.dumps(msg).encode() + b"\n")
        reply = s.makefile().readline().strip()
    except OSError:
        return 0
    if reply.startswith("error"):
        sys.stderr.write(f"osctld refused {hook} of {pool}:{name}: {reply}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
