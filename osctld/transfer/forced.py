"""``osctld-receive``: the forced command of every key in the receive user's
authorized_keys (``restrict,command="osctld-receive --socket S NAME"``).

sshd runs it as the receive user for each SSH session another node opens.
It reads the call from ``SSH_ORIGINAL_COMMAND`` (``<verb> <JSON object>``)
and the sender's address from ``SSH_CONNECTION``, sends one request to the
daemon's receive socket with its stdin and stdout passed along (SCM_RIGHTS),
so the daemon reads a stream straight from the SSH channel, and ends with the
daemon's reply: one JSON line on stdout, and the exit status the daemon
names (0, or an error's as osctl gives it). The standard library only, and
no import of osctld: it runs once per stage of a transfer, as the receive
user, with whatever Python that user may run (a test node's runs this file
with /usr/bin/python3).
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys

MAX_REPLY = 16 * 1024 * 1024


class Refused(Exception):
    """A call that never reached the daemon: (code, message)."""


# rsync's client runs "rsync --server ... . TOKEN" through its remote shell:
# the receive verb that runs rsync's server end on this session's stdin and
# stdout. Its reply goes to stderr, out of the way of rsync's protocol.
RSYNC_VERB = "ct.receive.rsync"


def parse(command: str) -> tuple[str, dict]:
    verb, _, rest = command.strip().partition(" ")
    if verb == "rsync":
        try:
            argv = shlex.split(command)
            return RSYNC_VERB, {"argv": argv, "token": argv[-1]}
        except ValueError as e:
            raise Refused("invalid", f"bad rsync command: {e}") from None
    if not verb:
        raise Refused("invalid", "no receive verb given")
    try:
        args = json.loads(rest) if rest.strip() else {}
    except ValueError as e:
        raise Refused("invalid", f"the arguments are no JSON: {e}") from None
    if not isinstance(args, dict):
        raise Refused("invalid", "the arguments must be a JSON object")
    return verb, args


def call(path: str, request: dict) -> dict:
    """One JSON line to the receive socket with our stdin and stdout; its reply line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(path)
        except OSError as e:
            raise Refused("internal", f"osctld does not receive here ({e.strerror})") from None
        socket.send_fds(sock, [json.dumps(request).encode() + b"\n"], [0, 1])
        reply = b""
        while not reply.endswith(b"\n"):
            data = sock.recv(65536)
            if not data or len(reply) > MAX_REPLY:
                raise Refused("internal", "osctld closed the receive connection")
            reply += data
    return json.loads(reply)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] != "--socket":
        print("usage: osctld-receive --socket PATH KEY-NAME (as a forced command)", file=sys.stderr)
        sys.exit(2)
    path, key = argv[1], argv[2]
    peer = (os.environ.get("SSH_CONNECTION") or "").split(" ")[0]
    out = sys.stdout
    try:
        verb, args = parse(os.environ.get("SSH_ORIGINAL_COMMAND", ""))
        if verb == RSYNC_VERB:
            out = sys.stderr
        reply = call(path, {"verb": verb, "args": args, "key": key, "peer": peer})
    except Refused as e:
        code, message = e.args
        reply = {"error": {"code": code, "message": message}, "status": 2 if code == "invalid" else 1}
    status = reply.pop("status", 1)
    out.write(json.dumps(reply) + "\n")
    out.flush()
    sys.exit(status if isinstance(status, int) else 1)


if __name__ == "__main__":
    main()
